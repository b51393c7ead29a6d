package node

import (
	"context"
	"time"

	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// attachOpenTimeout bounds the wait for an Attach stream's serve message.
var attachOpenTimeout = 10 * time.Second

// newHub builds the table of agents attached to this node (internal/hub)
// and wires its callbacks: readiness goes to gossip and the registry, an
// agent that stays away is deregistered, a second vote is checked for
// equivocation. The callbacks run only once the agents component starts,
// after the store they use.
func (n *Node) newHub() (*hub.Hub, error) {
	cfg := hub.DefaultConfig()
	cfg.Node = n.cfg.Name
	cfg.Logger = n.log
	cfg.Clock = n.clock
	cfg.DisconnectGrace = DisconnectGrace
	cfg.AttachOpenTimeout = attachOpenTimeout
	cfg.MaxPayload = n.cfg.MaxPayload
	cfg.MaxMessageBytes = uint32(n.cfg.maxMessage())
	cfg.Done = n.stopping
	cfg.Limit = func(id string, req *meshnodev1.ServeRequest) int32 { return api.ServeLimit(n.store, id, req) }
	cfg.StatusChanged = n.agentStatusChanged
	cfg.Deregister = func(ctx context.Context, id string) error { return n.registry.Reap(ctx, id) }
	cfg.Registered = n.registeredHere
	cfg.SecondVote = func(ctx context.Context, first, second *meshnodev1.Vote) { n.decisions.SecondVote(ctx, first, second) }
	return hub.New(cfg)
}
