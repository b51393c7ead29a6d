package node

import (
	"context"
	"time"
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
