package node

import (
	"context"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/catalog"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// DisconnectGrace is how long an agent whose Serve stream broke keeps its
// registration: long enough for a restart or a node restart to come back.
const DisconnectGrace = 30 * time.Second

// loadPublishInterval is how often local agent load goes to gossip; gossip
// itself decides which changes are significant enough to send at once.
const loadPublishInterval = 200 * time.Millisecond

func (n *Node) startAgents(context.Context) error {
	n.goBackground(n.adoptOrphans)
	n.every(time.Second, n.cutRevokedPeers)
	n.every(time.Second, n.reapDisconnected)
	return nil
}

// adoptOrphans gives agents registered here before a restart, which have no
// Serve stream now, the grace period to reconnect; the reaper deregisters
// those that do not. A client's replica may need a moment to synchronise.
func (n *Node) adoptOrphans(ctx context.Context) {
	for {
		agents, _, err := n.store.Agents(ctx, consensus.ReadOptions{}, consensus.AgentFilter{Node: n.cfg.Name})
		if err == nil {
			for _, a := range agents {
				n.local.adopt(a, time.Now())
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// reapDisconnected deregisters agents whose Serve stream has been gone for
// longer than the grace period.
func (n *Node) reapDisconnected(ctx context.Context, now time.Time) {
	for _, id := range n.local.expired(now, DisconnectGrace) {
		n.log.Info("deregistering agent: its Serve stream did not come back", "agent", id, "grace", DisconnectGrace)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := n.deregisterAgent(wctx, id); err != nil {
			n.log.Warn("deregister after grace period failed; will retry", "agent", id, "err", err)
		}
		cancel()
	}
}

// agentStatusChanged publishes a local agent's readiness: to gossip at once
// (routing elsewhere reacts within one gossip round) and to the registry.
func (n *Node) agentStatusChanged(id string, st meshnodev1.AgentStatus) {
	n.publishLoadNow()
	n.goBackground(func(ctx context.Context) {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, res, err := n.registry.Apply(wctx, &meshnodev1.Command{Version: 1, Op: &meshnodev1.Command_SetAgentStatus{SetAgentStatus: &meshnodev1.SetAgentStatusCommand{Id: id, Status: st}}})
		if err == nil {
			err = resultError(res, "set agent status")
		}
		if err != nil && ctx.Err() == nil {
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
func (n *Node) cutRevokedPeers(context.Context, time.Time) {
	if k := n.ep.ClosePeers(func(id pki.ID) bool { return n.pki.IsRevoked(nil, id) }); k > 0 {
		n.log.Warn("closed connections of a revoked peer", "connections", k)
	}
}

// hubView shows the catalog the local agents.
type hubView struct{ l *localAgents }

func (h hubView) Serving(id string) bool { return h.l.serving(id) }

func (h hubView) Load(id string) (catalog.LocalLoad, bool) {
	l, ok := h.l.load(id)
	return catalog.LocalLoad{AgentID: l.id, Ready: l.ready, InFlight: l.inFlight, Capacity: l.capacity}, ok
}

func (h hubView) Loads() []catalog.LocalLoad {
	snap := h.l.snapshot()
	out := make([]catalog.LocalLoad, len(snap))
	for i, l := range snap {
		out[i] = catalog.LocalLoad{AgentID: l.id, Ready: l.ready, InFlight: l.inFlight, Capacity: l.capacity}
	}
	return out
}
