package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// TestRevokedNodeIsCutOff: after `node revoke n3`, calls from n1 no longer
// reach n3's agent (its connections are closed and new handshakes refused),
// while the rest of the cluster keeps working.
func TestRevokedNodeIsCutOff(t *testing.T) {
	nodes := startCluster(t)
	serveAgent(t, nodes[2], "far", map[string]agent.HandlerFunc{"far": echoFrom("n3")})
	serveAgent(t, nodes[1], "near", map[string]agent.HandlerFunc{"near": echoFrom("n2")})
	waitFor(t, 20*time.Second, "n1 sees both agents", func() bool {
		return len(readyAgents(t, nodes[0], "far")) == 1 && len(readyAgents(t, nodes[0], "near")) == 1
	})
	inv := meshnodev1.NewInvokeServiceClient(nodes[0].conn(t))
	call := func(capability string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: capability, Payload: []byte("x")})
		return err
	}
	if err := call("far"); err != nil {
		t.Fatalf("call to n3 before revocation: %v", err)
	}
	if _, err := meshnodev1.NewPKIServiceClient(nodes[0].operatorConn(t, nodes[0].dir)).RevokeNode(context.Background(), &meshnodev1.RevokeNodeRequest{NodeName: "n3", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "calls to the revoked node fail", func() bool { return call("far") != nil })
	// Stays cut off: not a transient failure.
	for i := 0; i < 3; i++ {
		if err := call("far"); err == nil {
			t.Fatalf("call %d to the revoked node succeeded", i)
		}
	}
	if err := call("near"); err != nil {
		t.Fatalf("the rest of the cluster stopped working: %v", err)
	}
}
