package node

import (
	"context"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
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
	n.hub.Start()
	n.every(time.Second, n.cutRevokedPeers)
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
	snap := n.hub.Snapshot()
	agents := make([]gossip.AgentLoad, 0, len(snap))
	var total gossip.NodeLoad
	total.Status = gossip.StatusReady
	for _, a := range snap {
		st := gossip.StatusUnknown
		if a.Ready {
			st = gossip.StatusReady
		}
		agents = append(agents, gossip.AgentLoad{AgentID: a.ID, InFlight: a.InFlight, Capacity: a.Capacity, Status: st,
			EWMALatency: n.stats.latency(a.ID), SuccessRate: n.stats.success(a.ID)})
		total.InFlight += a.InFlight
	}
	total.EWMALatency, total.SuccessRate = n.stats.latency(""), n.stats.success("")
	if err := n.gossip.SetLocalLoad(total, agents); err != nil {
		n.log.Debug("publishing load failed", "err", err)
	}
}

// agentLoad is what Discover reports for an agent.
func (n *Node) agentLoad(a *meshnodev1.Agent) *meshnodev1.AgentLoad {
	if a.GetNode() == n.cfg.Name {
		l, ok := n.hub.Load(a.GetId())
		if !ok {
			return &meshnodev1.AgentLoad{Status: "unknown"}
		}
		st := "unknown"
		if l.Ready {
			st = "ready"
		}
		return &meshnodev1.AgentLoad{InFlight: l.InFlight, Capacity: l.Capacity, Status: st,
			EwmaLatencyMs: float64(n.stats.latency(a.GetId())) / 1e6, SuccessRate: n.stats.success(a.GetId())}
	}
	if n.gossip == nil {
		return &meshnodev1.AgentLoad{Status: "unknown"}
	}
	r := n.remoteStatus(a)
	switch {
	case !r.alive:
		return &meshnodev1.AgentLoad{Status: "unknown"}
	case !r.reported && r.ready:
		return &meshnodev1.AgentLoad{Status: "ready"}
	case !r.reported:
		return &meshnodev1.AgentLoad{Status: "unknown"}
	}
	l := r.load
	return &meshnodev1.AgentLoad{InFlight: l.InFlight, Capacity: l.Capacity, EwmaLatencyMs: float64(l.EWMALatency) / 1e6,
		SuccessRate: l.SuccessRate, Status: l.Status.String()}
}

func (n *Node) stopGossip(context.Context) {
	if n.gossip == nil {
		return
	}
	if err := n.gossip.Close(); err != nil {
		n.log.Debug("gossip close", "err", err)
	}
}

// callStats keeps this node's EWMA latency and success rate per agent it
// served ("" is the node as a whole), for the load it gossips.
type callStats struct {
	mu sync.Mutex
	m  map[string]*ewma
}

type ewma struct {
	latency float64 // nanoseconds
	success float64
	seen    bool
}

// statsAlpha weighs a new sample: about the last 20 calls dominate.
const statsAlpha = 0.1

func (s *callStats) observe(id string, d time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*ewma{}
	}
	e := s.m[id]
	if e == nil {
		e = &ewma{}
		s.m[id] = e
	}
	okv := 0.0
	if ok {
		okv = 1
	}
	if !e.seen {
		e.latency, e.success, e.seen = float64(d), okv, true
		return
	}
	e.latency += statsAlpha * (float64(d) - e.latency)
	e.success += statsAlpha * (okv - e.success)
}

func (s *callStats) latency(id string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[id]; e != nil {
		return time.Duration(e.latency)
	}
	return 0
}

func (s *callStats) success(id string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[id]; e != nil {
		return e.success
	}
	return 0
}

func (n *Node) recordCall(d time.Duration, ok bool) { n.stats.observe("", d, ok) }

// cutRevokedPeers closes connections to peers revoked after they connected;
// new handshakes from them are refused by the TLS verification already.
func (n *Node) cutRevokedPeers(context.Context, time.Time) {
	if k := n.ep.ClosePeers(func(id pki.ID) bool { return n.pki.IsRevoked(nil, id) }); k > 0 {
		n.log.Warn("closed connections of a revoked peer", "connections", k)
	}
}
