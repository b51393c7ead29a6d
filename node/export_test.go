package node

import (
	"context"
	"time"

	"github.com/agentmesh/meshnode/consensus"
)

// SetAttachOpenTimeout shortens the wait for an Attach stream's first
// message, for tests; it returns the function that restores it.
func SetAttachOpenTimeout(d time.Duration) (restore func()) {
	old := attachOpenTimeout
	attachOpenTimeout = d
	return func() { attachOpenTimeout = old }
}

// DropAgentRecord deletes an agent's registry record without telling the
// node's agent hub, the way a deregister whose outcome was unknown (it timed
// out, then committed) leaves things.
func DropAgentRecord(ctx context.Context, n *Node, id string) error {
	_, _, err := n.store.DeregisterAgent(ctx, id)
	return err
}

// RaftView is what a server's Raft says of itself: its term and the names
// in its configuration.
func RaftView(ctx context.Context, n *Node) (term uint64, servers []string) {
	infos, _ := n.store.Servers(ctx)
	for _, s := range infos {
		servers = append(servers, s.Name)
	}
	return n.store.Term(), servers
}

// IsRevoked reads the local replica's revocation of a node name.
func IsRevoked(ctx context.Context, n *Node, name string) bool {
	r, err := n.store.IsNodeRevoked(ctx, consensus.ReadOptions{}, name)
	return r && err == nil
}

// StoreOf is n's replicated store, for tests that set up state the way a
// server writes it and observe what an API call changed.
func StoreOf(n *Node) *consensus.Store { return n.store }
