package node_test

import (
	"context"
	"os"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// member returns name's entry in n's member list (nil if absent).
func member(t *testing.T, n *testNode, name string) *meshnodev1.Member {
	t.Helper()
	resp, err := meshnodev1.NewNodeServiceClient(n.conn(t)).Members(context.Background(), &meshnodev1.MembersRequest{})
	if err != nil {
		t.Fatalf("members: %v", err)
	}
	for _, m := range resp.GetMembers() {
		if m.GetName() == name {
			return m
		}
	}
	return nil
}

// A node that joined with a client token and restarts with --server claims
// the server role in gossip, but Raft does not take it: only a server
// token's use admits a server. A node that joined with a server token is
// taken.
func TestClientTokenNodeRestartedAsServerStaysOutOfRaft(t *testing.T) {
	root, err := os.MkdirTemp("", "mna")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	n1 := startTestNode(t, root, "n1", true, nil, "")
	join := []string{n1.addr}

	c := startTestNode(t, root, "c1", false, join, n1.token(t, false, "c1"))
	c.stop()
	// Same data directory: its certificate is kept, no token is needed.
	startTestNode(t, root, "c1", true, join, "")
	startTestNode(t, root, "s1", true, join, n1.token(t, true, "s1"))

	waitFor(t, 30*time.Second, "s1 in Raft and c1 gossiping as a server", func() bool {
		cm, sm := member(t, n1, "c1"), member(t, n1, "s1")
		return cm.GetRole() == "server" && cm.GetStatus() == "alive" && sm.GetRaftRole() != "" && sm.GetRaftRole() != "none"
	})
	// s1 got in within the wait above; c1 has had as long, and more.
	time.Sleep(3 * time.Second)
	if r := member(t, n1, "c1").GetRaftRole(); r != "not-admitted" {
		t.Fatalf("c1 joined with a client token and restarted with --server: raft role %q, want not-admitted", r)
	}
}
