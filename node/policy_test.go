package node_test

import (
	"context"
	"strings"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPolicyRefusedKeepsTheOldOne: a signed SetPolicy commits a valid
// policy (an unsigned one is refused); an invalid one is refused with the field and the reason, and the policy in
// force is unchanged on every node.
func TestPolicyRefusedKeepsTheOldOne(t *testing.T) {
	nodes := startCluster(t)
	ctx := context.Background()
	// A client node may not set policy: it is an admin write, and a stolen
	// client certificate must not steer the cluster's routing.
	// Policy is an admin command: unsigned it is refused on every node,
	// a server's socket included; signed by an operator it goes through
	// any node, a client's included.
	for _, n := range nodes {
		_, err := meshnodev1.NewPolicyServiceClient(n.conn(t)).SetPolicy(ctx, &meshnodev1.SetPolicyRequest{Policy: &meshnodev1.RoutingPolicy{Capability: "inv.lookup", Policy: "cost"}})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "operator") {
			t.Fatalf("unsigned SetPolicy on %s: %v, want PermissionDenied asking for an operator key", n.name, err)
		}
	}
	ps := meshnodev1.NewPolicyServiceClient(nodes[2].operatorConn(t, nodes[0].dir))
	if _, err := ps.SetPolicy(ctx, &meshnodev1.SetPolicyRequest{Policy: &meshnodev1.RoutingPolicy{Capability: "inv.lookup", Policy: "latency", QualityTiers: []float64{0.95, 0.9}}}); err != nil {
		t.Fatal(err)
	}
	bad := []*meshnodev1.RoutingPolicy{
		{Capability: "inv.lookup", Policy: "fastest"},
		{Capability: "inv.lookup", QualityTiers: []float64{1.5}},
		{Capability: "inv.lookup", QualityTiers: []float64{0.9, 0.95}},
		{Capability: "inv.lookup", MaxCost: ptr(-1.0)},
	}
	for _, p := range bad {
		_, err := ps.SetPolicy(ctx, &meshnodev1.SetPolicyRequest{Policy: p})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "unchanged") {
			t.Errorf("SetPolicy(%v): got %v, want InvalidArgument saying the policy in force is unchanged", p, err)
		}
	}
	for _, n := range nodes {
		got, err := meshnodev1.NewPolicyServiceClient(n.conn(t)).GetPolicy(ctx, &meshnodev1.GetPolicyRequest{Capability: "inv.lookup", Consistency: meshnodev1.Consistency_CONSISTENCY_CONSISTENT})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetEffective().GetPolicy() != "latency" || got.GetSource() != "inv.lookup" {
			t.Fatalf("%s: policy in force %q from %q, want latency from inv.lookup", n.name, got.GetEffective().GetPolicy(), got.GetSource())
		}
	}
}

func ptr[T any](v T) *T { return &v }
