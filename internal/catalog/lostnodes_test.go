package catalog

import (
	"slices"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// After a long partition the other side's nodes have left the gossip view;
// the registry still lists them, and they are the way back. This node,
// nodes still in view (alive, suspect, dead or left: Reconnect or
// memberlist handles those), revoked nodes and records without an address
// are not.
func TestLostAddrs(t *testing.T) {
	recs := []*meshnodev1.NodeRecord{
		{Name: "self", Address: "10.0.0.1:7946"},
		{Name: "in-view", Address: "10.0.0.2:7946"},
		{Name: "lost-a", Address: "10.0.0.3:7946"},
		{Name: "revoked", Address: "10.0.0.4:7946"},
		{Name: "no-address"},
		{Name: "lost-b", Address: "10.0.0.6:7946"},
	}
	inView := func(name string) bool { return name == "in-view" }
	revoked := func(name string) bool { return name == "revoked" }
	got := lostAddrs("self", recs, inView, revoked)
	if want := []string{"10.0.0.3:7946", "10.0.0.6:7946"}; !slices.Equal(got, want) {
		t.Fatalf("lostAddrs = %v, want %v", got, want)
	}
	if got := lostAddrs("self", recs, func(string) bool { return true }, revoked); len(got) != 0 {
		t.Fatalf("with every node in view: %v, want none", got)
	}
}
