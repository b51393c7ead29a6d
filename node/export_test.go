package node

import (
	"context"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
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
	_, _, err := n.registry.Apply(ctx, &meshnodev1.Command{Version: 1, Op: &meshnodev1.Command_DeregisterAgent{DeregisterAgent: &meshnodev1.DeregisterAgentCommand{Id: id}}})
	return err
}
