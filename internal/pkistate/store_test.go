package pkistate

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/clock"
	"github.com/agentmesh/meshnode/operator"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport/transporttest"
	"go.step.sm/crypto/keyutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestTokenReusedAfterDedupWindowIsRefusedForGood: consensus remembers a
// retried write (same idempotency key) for 10 minutes and the used token
// until the token expires. A token reused after the first but before the
// second must still be refused as used (PermissionDenied, which the joiner
// does not retry), not reported as an internal error, which it retries
// forever.
func TestTokenReusedAfterDedupWindowIsRefusedForGood(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Now())
	cfg := consensus.Config{
		Name: "s1", Server: true, Bootstrap: true, DataDir: filepath.Join(t.TempDir(), "raft"),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, ApplyTimeout: 10 * time.Second, Clock: clk,
	}
	st, err := consensus.New(cfg, consensus.NetworkFromTransport(transporttest.NewEndpoint(t, "s1")))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	store := New(st)
	m, _, err := pki.NewCAMaterial("test.local", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SaveCA(ctx, m); err != nil {
		t.Fatal(err)
	}
	caCfg := pki.DefaultCAConfig()
	caCfg.TrustDomain, caCfg.Store, caCfg.Clock, caCfg.Logger = "test.local", store, clk, slog.New(slog.DiscardHandler)
	ca, err := pki.NewCA(ctx, caCfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ca.CreateToken(ctx, pki.TokenRequest{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	join := func(name string) error {
		req, err := pki.NewJoinRequest(raw, name, mustSigner(t))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ca.Join(ctx, req)
		return err
	}
	// A token the CA signed that no operator's command recorded (what a
	// server holding the CA key could mint on its own) admits no one.
	if err := join("n0"); status.Code(err) != codes.PermissionDenied || !errors.Is(err, pki.ErrTokenRefused) || !pki.IsFinalJoinError(err) {
		t.Fatalf("an unrecorded token: err = %v (code %v), want PermissionDenied wrapping pki.ErrTokenRefused", err, status.Code(err))
	}
	raw, err = ca.CreateToken(ctx, pki.TokenRequest{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	recordIssued(ctx, t, st, m.GetRootCerts()[0], raw, clk.Now())
	start := clk.Now()
	if err := join("n1"); err != nil {
		t.Fatalf("first use of the token: %v", err)
	}
	// Within the dedup window, then past it (11 minutes after the first use).
	for _, elapsed := range []time.Duration{time.Minute, 11 * time.Minute} {
		clk.Advance(elapsed - (clk.Now().Sub(start)))
		err := join("n2")
		if status.Code(err) != codes.PermissionDenied || !errors.Is(err, pki.ErrTokenUsed) || !pki.IsFinalJoinError(err) {
			t.Fatalf("token reused %s after its first use: err = %v (code %v), want PermissionDenied wrapping pki.ErrTokenUsed",
				elapsed, err, status.Code(err))
		}
	}
}

// recordIssued records raw as issued by a first admin it creates, as the
// API does after minting.
func recordIssued(ctx context.Context, t *testing.T, st *consensus.Store, root []byte, raw string, now time.Time) {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	bundle := &meshnodev1.TrustBundle{Roots: [][]byte{root}, FirstAdminName: "admin", FirstAdminPublicKey: pub}
	if _, err := st.PutTrustBundle(ctx, bundle); err != nil {
		t.Fatal(err)
	}
	tok, err := pki.ParseToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	req := &meshnodev1.CreateTokenRequest{Ttl: durationpb.New(time.Hour), AnyName: true}
	sc, err := operator.SignCommand("admin", key, consensus.ClusterID(bundle), consensus.MethodCreateToken, req, now, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Admin(ctx, &meshnodev1.AdminCommand{Method: consensus.MethodCreateToken, Signature: sc,
		Request:     &meshnodev1.AdminCommand_CreateToken{CreateToken: req},
		IssuedToken: &meshnodev1.IssuedToken{Id: tok.ID, Role: meshnodev1.JoinRole_JOIN_ROLE_CLIENT, ExpiresAt: timestamppb.New(tok.Expires)}}); err != nil {
		t.Fatalf("recording the issued token: %v", err)
	}
}

func mustSigner(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
