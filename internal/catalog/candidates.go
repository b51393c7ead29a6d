package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"google.golang.org/protobuf/proto"
)

// Resolve gives the router a capability's candidates and policy (for the
// call's own capability and for a policy's fallback).
func (c *Catalog) Resolve(ctx context.Context, capability string) ([]routing.Candidate, routing.Policy, error) {
	pol, err := c.PolicyFor(ctx, capability)
	if err != nil {
		return nil, pol, err
	}
	agents, err := c.agentsFor(ctx, capability)
	if err != nil {
		return nil, pol, err
	}
	if len(agents) == 0 {
		// The local replica may lag a registration made a moment ago on
		// another node; ask the leader before answering NotFound.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		if fresh, _, err := c.cfg.Registry.Agents(cctx, consensus.ReadOptions{Consistency: consensus.Consistent}, consensus.AgentFilter{Capability: capability}); err == nil {
			agents = fresh
		}
		cancel()
	}
	cands := make([]routing.Candidate, 0, len(agents))
	for _, a := range agents {
		if cand, ok := routing.CandidateFromAgent(a, capability, c.candidateLoad(a), c.nodeAlive(a.GetNode())); ok {
			cands = append(cands, cand)
		}
	}
	return cands, pol, nil
}

// agentsFor returns the agents registered for a capability, from the local
// replica.
func (c *Catalog) agentsFor(ctx context.Context, capability string) ([]*meshnodev1.Agent, error) {
	// The index is read before the registry: a write landing in between
	// only makes the cached answer newer than its key, never older.
	index := c.cfg.Registry.Index()
	if agents, ok := c.agents.get(capability, index); ok {
		return agents, nil
	}
	agents, _, err := c.cfg.Registry.Agents(ctx, consensus.ReadOptions{}, consensus.AgentFilter{Capability: capability})
	if err != nil {
		return nil, fmt.Errorf("find agents for %s: %w", capability, err)
	}
	if len(agents) > 0 { // an empty answer is confirmed with the leader each time
		c.agents.put(capability, index, agents)
	}
	return agents, nil
}

func (c *Catalog) nodeAlive(node string) bool {
	if node == c.cfg.LocalNode {
		return true // our own agents: the hub is the truth, no gossip needed
	}
	g := c.membership()
	return g != nil && g.NodeAlive(node)
}

// candidateLoad is AgentLoad without this node's own latency and success
// figures for its local agents: the router measures those calls itself, and
// feeding its outcomes back as if they were gossip would count each twice.
func (c *Catalog) candidateLoad(a *meshnodev1.Agent) *meshnodev1.AgentLoad {
	l := c.AgentLoad(a)
	if a.GetNode() == c.cfg.LocalNode {
		l.EwmaLatencyMs, l.SuccessRate = 0, 0
	}
	return l
}

// AgentLoad is the freshest load known for an agent: from the hub for this
// node's agents, from its node's signed gossip report for others. It is nil
// when there is no report (a fresh registration on another node, or a
// report that arrived before that node's key reached this replica): then
// the registry status is all there is. Discover and routing both read it.
func (c *Catalog) AgentLoad(a *meshnodev1.Agent) *meshnodev1.AgentLoad {
	id := a.GetId()
	if a.GetNode() == c.cfg.LocalNode {
		l, ok := c.cfg.Local.Load(id)
		if !ok {
			return &meshnodev1.AgentLoad{Status: "unknown"}
		}
		st := "unknown"
		if l.Ready {
			st = "ready"
		}
		return &meshnodev1.AgentLoad{InFlight: l.InFlight, Capacity: l.Capacity, Status: st,
			EwmaLatencyMs: float64(c.stats.latency(id)) / 1e6, SuccessRate: c.stats.success(id)}
	}
	g := c.membership()
	if g == nil || !g.NodeAlive(a.GetNode()) {
		return &meshnodev1.AgentLoad{Status: "unknown"}
	}
	l, ok := g.LoadOf(id, a.GetNode())
	if !ok {
		return nil
	}
	return &meshnodev1.AgentLoad{InFlight: l.InFlight, Capacity: l.Capacity, EwmaLatencyMs: float64(l.EWMALatency) / 1e6,
		SuccessRate: l.SuccessRate, Status: l.Status.String()}
}

// Ready reports whether an agent can take work now: serving here, or ready
// on a live node.
func (c *Catalog) Ready(a *meshnodev1.Agent) bool {
	if a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_REVOKED || !c.nodeAlive(a.GetNode()) {
		return false
	}
	if l := c.AgentLoad(a); l != nil {
		return l.GetStatus() == gossip.StatusReady.String()
	}
	return a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_READY
}

// PolicyFor returns the routing policy in force for a capability: its own,
// else the cluster default "*", else the built-in defaults. It runs on every
// call, on both nodes, so the answer is cached per registry index.
func (c *Catalog) PolicyFor(ctx context.Context, capability string) (routing.Policy, error) {
	index := c.cfg.Registry.Index() // before the read, as in agentsFor
	if pol, ok := c.policies.get(capability, index); ok {
		return pol, nil
	}
	var readErr error
	pol, _, err := routing.PolicyFor(capability, func(key string) *meshnodev1.RoutingPolicy {
		p, err := c.storedPolicy(ctx, key)
		if err != nil && readErr == nil {
			readErr = err
		}
		return p
	})
	if readErr != nil {
		return routing.DefaultPolicy(), readErr
	}
	if err != nil {
		return routing.DefaultPolicy(), fmt.Errorf("%w: %v", ErrCorruptPolicy, err)
	}
	c.policies.put(capability, index, pol)
	return pol, nil
}

// ErrCorruptPolicy is a stored policy that no longer decodes or validates.
var ErrCorruptPolicy = errors.New("stored routing policy is invalid")

// storedPolicy reads one stored policy (nil when there is none).
func (c *Catalog) storedPolicy(ctx context.Context, key string) (*meshnodev1.RoutingPolicy, error) {
	rec, _, err := c.cfg.Registry.Policy(ctx, consensus.ReadOptions{}, key)
	if errors.Is(err, consensus.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read policy %q: %w", key, err)
	}
	p := &meshnodev1.RoutingPolicy{}
	if err := proto.Unmarshal(rec.GetPolicy(), p); err != nil {
		return nil, fmt.Errorf("%w: policy %q: %v", ErrCorruptPolicy, key, err)
	}
	return p, nil
}
