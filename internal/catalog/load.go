package catalog

import (
	"sync"
	"time"

	"github.com/agentmesh/meshnode/gossip"
)

// Observe records one call this node delivered to a local agent, for the
// load it gossips and Discover reports.
func (c *Catalog) Observe(agentID string, d time.Duration, ok bool) { c.stats.observe(agentID, d, ok) }

// ObserveCall records one call this node routed, for the node-wide figures.
func (c *Catalog) ObserveCall(d time.Duration, ok bool) { c.stats.observe("", d, ok) }

// LoadReport is what this node gossips about itself and its agents.
func (c *Catalog) LoadReport() (gossip.NodeLoad, []gossip.AgentLoad) {
	local := c.cfg.Local.Snapshot()
	agents := make([]gossip.AgentLoad, 0, len(local))
	total := gossip.NodeLoad{Status: gossip.StatusReady}
	for _, a := range local {
		st := gossip.StatusUnknown
		if a.Ready {
			st = gossip.StatusReady
		}
		agents = append(agents, gossip.AgentLoad{AgentID: a.ID, InFlight: a.InFlight, Capacity: a.Capacity, Status: st,
			EWMALatency: c.stats.latency(a.ID), SuccessRate: c.stats.success(a.ID)})
		total.InFlight += a.InFlight
	}
	total.EWMALatency, total.SuccessRate = c.stats.latency(""), c.stats.success("")
	return total, agents
}

// callStats keeps this node's EWMA latency and success rate per agent it
// served ("" is the node as a whole).
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
