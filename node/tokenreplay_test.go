package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/agentmesh/meshnode/internal/opsign"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Minting a token writes no Raft state, so the minting server judges the
// signed command itself: a captured command sent again is refused (its
// nonce is remembered), and so is one signed by an operator without the
// admin role.
func TestTokenCommandsAreSignedOnce(t *testing.T) {
	nodes := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key, err := operator.ReadKeyFile(operator.BootstrapKeyPath(nodes[0].dir))
	if err != nil {
		t.Fatal(err)
	}
	conn := nodes[0].conn(t)
	req := &meshnodev1.CreateTokenRequest{NodeName: "later", Ttl: durationpb.New(time.Hour)}
	signed, err := opsign.Sign(ctx, conn, key, operator.FirstAdmin, "/meshnode.v1.PKIService/CreateToken", req)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := metadata.FromOutgoingContext(signed)
	pkiClient := meshnodev1.NewPKIServiceClient(conn)
	if _, err := pkiClient.CreateToken(metadata.NewOutgoingContext(ctx, md), req); err != nil {
		t.Fatalf("signed token request: %v", err)
	}
	if _, err := pkiClient.CreateToken(metadata.NewOutgoingContext(ctx, md), req); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "already applied") {
		t.Fatalf("the same signed token request again: %v, want PermissionDenied (nonce seen)", err)
	}
	changed := &meshnodev1.CreateTokenRequest{NodeName: "other", Role: meshnodev1.JoinRole_JOIN_ROLE_SERVER, Ttl: durationpb.New(time.Hour)}
	if _, err := pkiClient.CreateToken(metadata.NewOutgoingContext(ctx, md), changed); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a signature reused for another request: %v, want PermissionDenied", err)
	}
}
