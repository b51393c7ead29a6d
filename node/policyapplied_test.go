package node_test

import (
	"context"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// TestPolicySetThroughFollowerIsInForceThere: a policy set through a server
// that is not the leader is answered only once that server has applied it,
// so a call routed there right after the answer already follows it.
// Before, the follower answered on commit and applied the entry with the
// next heartbeat, some time later.
func TestPolicySetThroughFollowerIsInForceThere(t *testing.T) {
	nodes := startCluster(t)
	ctx := context.Background()
	var follower *testNode
	waitFor(t, 30*time.Second, "a server that is not the leader knows the leader", func() bool {
		for _, n := range nodes[:2] {
			st, err := meshnodev1.NewNodeServiceClient(n.conn(t)).Status(ctx, &meshnodev1.StatusRequest{})
			if err == nil && st.GetLeader() != "" && st.GetLeader() != n.name {
				follower = n
				return true
			}
		}
		return false
	})
	ps := meshnodev1.NewPolicyServiceClient(follower.operatorConn(t, nodes[0].dir))
	for i, name := range []string{"cost", "latency", "round_robin", "least_loaded", "cost", "latency"} {
		set, err := ps.SetPolicy(ctx, &meshnodev1.SetPolicyRequest{Policy: &meshnodev1.RoutingPolicy{Capability: "inv.lookup", Policy: name}})
		if err != nil {
			t.Fatalf("set %d through follower %s: %v", i, follower.name, err)
		}
		got, err := ps.GetPolicy(ctx, &meshnodev1.GetPolicyRequest{Capability: "inv.lookup"}) // the local replica, no waiting
		if err != nil {
			t.Fatal(err)
		}
		if got.GetEffective().GetPolicy() != name || got.GetIndex() < set.GetIndex() {
			t.Fatalf("set %d: %s answered %q committed at index %d, but its replica is at index %d with policy %q",
				i, follower.name, name, set.GetIndex(), got.GetIndex(), got.GetEffective().GetPolicy())
		}
	}
}
