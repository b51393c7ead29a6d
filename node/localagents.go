package node

import (
	"context"
	"strconv"

	"github.com/agentmesh/meshnode/internal/hub"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// newHub builds the table of agents attached to this node (internal/hub)
// and wires its callbacks: readiness goes to gossip and the registry, an
// agent that stays away is deregistered, a second vote is checked for
// equivocation.
func (n *Node) newHub() (*hub.Hub, error) {
	cfg := hub.DefaultConfig()
	cfg.Node = n.cfg.Name
	cfg.Logger = n.log
	cfg.DisconnectGrace = DisconnectGrace
	cfg.AttachOpenTimeout = attachOpenTimeout
	cfg.MaxPayload = n.cfg.MaxPayload
	cfg.MaxMessageBytes = uint32(n.cfg.maxMessage())
	cfg.Done = n.stopping
	cfg.Limit = n.serveLimit
	cfg.StatusChanged = n.agentStatusChanged
	cfg.Deregister = func(ctx context.Context, id string) error {
		_, err := n.deregisterAgent(ctx, id)
		return err
	}
	cfg.Registered = n.registeredHere
	cfg.SecondVote = n.reportDoubleVote
	return hub.New(cfg)
}

// ctxStatus converts a context's end into the matching gRPC status.
func ctxStatus(ctx context.Context, doing string) error {
	if ctx.Err() == context.DeadlineExceeded {
		return status.Errorf(codes.DeadlineExceeded, "deadline passed while %s", doing)
	}
	return status.Errorf(codes.Canceled, "caller cancelled while %s", doing)
}

func itoa(i int) string { return strconv.Itoa(i) }
