package pki

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestServiceCreateTokenRevokeStatus(t *testing.T) {
	ctx := context.Background()
	ca, store, srv := bootstrapServer(t, testTD, "srv")
	renewAt := time.Now().Add(time.Hour)
	svc := NewService(ca, srv.keeper.Current, func() time.Time { return renewAt })

	resp, err := svc.CreateToken(ctx, &meshnodev1.CreateTokenRequest{
		Ttl: durationpb.New(10 * time.Minute), Role: meshnodev1.JoinRole_JOIN_ROLE_SERVER, NodeName: "n2",
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(resp.Token)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID != resp.Id || tok.Node != "n2" || tok.Role != meshnodev1.JoinRole_JOIN_ROLE_SERVER ||
		tok.TrustDomain != testTD || hex.EncodeToString(tok.RootFingerprint) != hex.EncodeToString(ca.RootFingerprint()) {
		t.Fatalf("token claims %+v do not match the request", tok)
	}
	if d := time.Until(resp.ExpiresAt.AsTime()); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("expires in %s, want 10m", d)
	}
	if _, err := svc.CreateToken(ctx, &meshnodev1.CreateTokenRequest{NodeName: "n3", Ttl: durationpb.New(-time.Second)}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("negative ttl: %v", err)
	}
	if _, err := svc.CreateToken(ctx, &meshnodev1.CreateTokenRequest{NodeName: "n3", Ttl: durationpb.New(30 * 24 * time.Hour)}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("30 day ttl: %v", err)
	}
	// A token names its node unless asked otherwise; a re-join needs the name.
	for name, req := range map[string]*meshnodev1.CreateTokenRequest{
		"no name":         {},
		"name and any":    {NodeName: "n3", AnyName: true},
		"rejoin, no name": {Rejoin: true, AnyName: true},
	} {
		if _, err := svc.CreateToken(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if resp, err := svc.CreateToken(ctx, &meshnodev1.CreateTokenRequest{AnyName: true}); err != nil {
		t.Errorf("any-name token: %v", err)
	} else if tok, _ := ParseToken(resp.GetToken()); tok == nil || tok.Node != "" {
		t.Errorf("any-name token is bound: %+v", tok)
	}
	if resp, err := svc.CreateToken(ctx, &meshnodev1.CreateTokenRequest{NodeName: "n2", Rejoin: true}); err != nil {
		t.Errorf("re-join token: %v", err)
	} else if tok, _ := ParseToken(resp.GetToken()); tok == nil || !tok.Rejoin || tok.Node != "n2" {
		t.Errorf("re-join token claims: %+v", tok)
	}

	if _, err := svc.RevokeNode(ctx, &meshnodev1.RevokeNodeRequest{NodeName: "n9", Reason: "lost laptop"}); err != nil {
		t.Fatal(err)
	}
	if !store.IsRevoked(nil, NodeID(testTD, "n9")) {
		t.Fatal("RevokeNode did not reach the store")
	}
	if _, err := svc.RevokeNode(ctx, &meshnodev1.RevokeNodeRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty revoke: %v", err)
	}

	st, err := svc.CertificateStatus(ctx, &meshnodev1.CertificateStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	leaf := srv.keeper.Current().Leaf()
	if st.SpiffeId != "spiffe://mesh.test/node/srv" || st.Serial != leaf.SerialNumber.String() ||
		!st.NotAfter.AsTime().Equal(leaf.NotAfter) || !st.RenewAt.AsTime().Equal(renewAt) || !st.CaAvailable {
		t.Fatalf("status %+v", st)
	}
}

func TestServiceOnClientNode(t *testing.T) {
	_, _, srv := bootstrapServer(t, testTD, "srv")
	svc := NewService(nil, srv.keeper.Current, nil)
	_, err := svc.CreateToken(context.Background(), &meshnodev1.CreateTokenRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "server") {
		t.Fatalf("CreateToken on a client: %v", err)
	}
	if _, err := svc.RevokeNode(context.Background(), &meshnodev1.RevokeNodeRequest{NodeName: "x"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RevokeNode on a client: %v", err)
	}
	st, err := svc.CertificateStatus(context.Background(), &meshnodev1.CertificateStatusRequest{})
	if err != nil || st.CaAvailable {
		t.Fatalf("status on a client: %v %v", st, err)
	}
}
