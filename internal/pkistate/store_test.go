package pkistate

import (
	"context"
	"crypto"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/clock"
	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/transport/transporttest"
	"go.step.sm/crypto/keyutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

func mustSigner(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
