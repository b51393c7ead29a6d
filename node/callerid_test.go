package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
)

// forgeForward sends a ForwardCallRequest to target's node from ep, as a
// modified node binary would, and returns the caller the handler saw.
func forgeForward(ctx context.Context, ep *transport.Endpoint, addr, target, claimed string, chain ...string) (string, error) {
	return forgeForwardAs(ctx, ep, addr, target, "whoami", claimed, chain...)
}

// forgeForwardCap forges a call to capability from the agent chain.
func forgeForwardCap(ctx context.Context, ep *transport.Endpoint, addr, target, capability string, chain ...string) (string, error) {
	return forgeForwardAs(ctx, ep, addr, target, capability, "", chain...)
}

func forgeForwardAs(ctx context.Context, ep *transport.Endpoint, addr, target, capability, claimed string, chain ...string) (string, error) {
	req := &meshnodev1.ForwardCallRequest{TargetAgentId: target,
		Delivery: &meshnodev1.Delivery{Capability: capability, CallerAgentId: claimed, Deadline: timestamppb.New(time.Now().Add(10 * time.Second))},
		Routing:  &meshnodev1.RoutingMetadata{Chain: append(chain, target), Hops: uint32(len(chain)), Deadline: timestamppb.New(time.Now().Add(10 * time.Second))}}
	body, _ := proto.Marshal(req)
	out, err := ep.Call(ctx, addr, dataplane.MethodForwardCall, body)
	if err != nil {
		return "", err
	}
	var resp meshnodev1.ForwardCallResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		return "", err
	}
	return string(resp.GetOk().GetPayload()), nil
}

// A compromised client node (n3's real certificate, its own code) cannot
// make n1's agent believe a call comes from an agent on n2: the callee's
// node checks the caller's node part against the authenticated peer, and
// the handler's Caller is what n1 verified.
func TestForgedCallerIsRefusedAtTheCalleeNode(t *testing.T) {
	nodes := startCluster(t)
	serveAgent(t, nodes[0], "who", map[string]agent.HandlerFunc{"whoami": func(_ context.Context, r *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: []byte(r.Caller + "|" + strings.Join(r.Chain, ","))}, nil
	}})
	waitFor(t, 20*time.Second, "n1 sees its whoami agent", func() bool { return len(readyAgents(t, nodes[0], "whoami")) == 1 })
	creds, err := pki.LoadCredentials(nodes[2].dir)
	if err != nil {
		t.Fatal(err)
	}
	ep := attackerEndpoint(t, creds)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name    string
		claimed string
		chain   []string
	}{
		{"chain ends with n2's agent", "", []string{"n2/boss"}},
		{"delivery claims n2's agent", "n2/boss", []string{"n3/x"}},
	} {
		_, err := forgeForward(ctx, ep, nodes[0].addr, "n1/who", tc.claimed, tc.chain...)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "n3") {
			t.Errorf("%s: %v, want PermissionDenied naming n3", tc.name, err)
		}
	}
	got, err := forgeForward(ctx, ep, nodes[0].addr, "n1/who", "", "n2/boss", "n3/x")
	if err != nil {
		t.Fatal(err)
	}
	if got != "n3/x|n2/boss,n3/x" {
		t.Fatalf("handler saw %q, want caller n3/x (earlier entries are the previous hop's word)", got)
	}
}
