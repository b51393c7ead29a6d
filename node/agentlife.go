package node

import (
	"context"
	"math/big"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/background"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
)

// DisconnectGrace is how long an agent whose Serve stream broke keeps its
// registration: long enough for a restart or a node restart to come back.
const DisconnectGrace = 30 * time.Second

// loadPublishInterval is how often local agent load goes to gossip; gossip
// itself decides which changes are significant enough to send at once.
const loadPublishInterval = 200 * time.Millisecond

func (n *Node) startAgents(_ context.Context, bg *background.Group) error {
	n.agentLoops = bg
	n.hub.Start()
	bg.Every(time.Second, n.cutRevokedPeers)
	return nil
}

// registeredHere lists the agents the registry holds for this node, for
// the hub to adopt after a restart.
func (n *Node) registeredHere(ctx context.Context) ([]string, error) {
	agents, _, err := n.store.Agents(ctx, consensus.ReadOptions{}, consensus.AgentFilter{Node: n.cfg.Name})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(agents))
	for _, a := range agents {
		ids = append(ids, a.GetId())
	}
	return ids, nil
}

// agentStatusChanged publishes a local agent's readiness: to gossip at once
// (routing elsewhere reacts within one gossip round) and to the registry.
func (n *Node) agentStatusChanged(id string, st meshnodev1.AgentStatus) {
	n.publishLoadNow()
	n.agentLoops.Go(func(ctx context.Context) {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, _, err := n.store.SetAgentStatus(wctx, id, st); err != nil && ctx.Err() == nil {
			n.log.Debug("recording agent status failed", "agent", id, "status", st, "err", err)
		}
	})
}

func (n *Node) publishLoadNow() {
	if n.gossip == nil {
		return
	}
	// The ticker and serve-stream changes both publish: without the lock an
	// older snapshot could be handed to gossip after a newer one and stand
	// until the next tick.
	n.publishMu.Lock()
	defer n.publishMu.Unlock()
	total, agents := n.catalog.LoadReport()
	if err := n.gossip.SetLocalLoad(total, agents); err != nil {
		n.log.Debug("publishing load failed", "err", err)
	}
}

func (n *Node) stopGossip(context.Context) {
	if n.gossip == nil {
		return
	}
	if err := n.gossip.Close(); err != nil {
		n.log.Debug("gossip close", "err", err)
	}
}

// cutRevokedPeers closes connections to peers revoked after they connected;
// new handshakes from them are refused by the TLS verification already.
func (n *Node) cutRevokedPeers(context.Context) {
	revoked := func(p transport.Peer) bool {
		var serial *big.Int
		if len(p.Certificates) > 0 {
			serial = p.Certificates[0].SerialNumber
		}
		return n.pki.IsRevoked(serial, p.ID)
	}
	if k := n.ep.ClosePeersWhere(revoked); k > 0 {
		n.log.Warn("closed connections of a revoked peer", "connections", k)
	}
}
