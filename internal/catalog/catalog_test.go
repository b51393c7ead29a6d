package catalog

import (
	"context"
	"crypto/ed25519"
	"slices"
	"sync"
	"testing"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"google.golang.org/protobuf/proto"
)

// fakeRegistry is an in-memory registry replica.
type fakeRegistry struct {
	mu       sync.Mutex
	index    uint64
	agents   map[string]*meshnodev1.Agent
	nodes    map[string]*meshnodev1.NodeRecord
	policies map[string]*meshnodev1.PolicyRecord
	reads    int
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{index: 1, agents: map[string]*meshnodev1.Agent{}, nodes: map[string]*meshnodev1.NodeRecord{}, policies: map[string]*meshnodev1.PolicyRecord{}}
}

func (r *fakeRegistry) put(a *meshnodev1.Agent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.agents[a.GetId()] = a
	r.index++
}

func (r *fakeRegistry) putPolicy(t *testing.T, p *meshnodev1.RoutingPolicy) {
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.policies[p.GetCapability()] = &meshnodev1.PolicyRecord{Key: p.GetCapability(), Policy: b}
	r.index++
}

func (r *fakeRegistry) Index() uint64 { r.mu.Lock(); defer r.mu.Unlock(); return r.index }

func (r *fakeRegistry) Agents(_ context.Context, _ consensus.ReadOptions, f consensus.AgentFilter) ([]*meshnodev1.Agent, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	var out []*meshnodev1.Agent
	for _, a := range r.agents {
		if f.Node != "" && a.GetNode() != f.Node {
			continue
		}
		if f.Capability != "" && !slices.ContainsFunc(a.GetCapabilities(), func(c *meshnodev1.Capability) bool { return c.GetName() == f.Capability }) {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *meshnodev1.Agent) int { return compare(a.GetId(), b.GetId()) })
	return out, r.index, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *fakeRegistry) Agent(_ context.Context, _ consensus.ReadOptions, id string) (*meshnodev1.Agent, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.agents[id]
	if !ok {
		return nil, r.index, consensus.ErrNotFound
	}
	return a, r.index, nil
}

func (r *fakeRegistry) Nodes(context.Context, consensus.ReadOptions) ([]*meshnodev1.NodeRecord, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*meshnodev1.NodeRecord
	for _, n := range r.nodes {
		out = append(out, n)
	}
	return out, r.index, nil
}

func (r *fakeRegistry) Node(_ context.Context, _ consensus.ReadOptions, name string) (*meshnodev1.NodeRecord, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nodes[name]
	if !ok {
		return nil, r.index, consensus.ErrNotFound
	}
	return n, r.index, nil
}

func (r *fakeRegistry) Policy(_ context.Context, _ consensus.ReadOptions, key string) (*meshnodev1.PolicyRecord, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	p, ok := r.policies[key]
	if !ok {
		return nil, r.index, consensus.ErrNotFound
	}
	return p, r.index, nil
}

func (r *fakeRegistry) IsNodeRevoked(context.Context, consensus.ReadOptions, string) (bool, error) {
	return false, nil
}

type fakeGossip struct {
	alive map[string]bool
	loads map[string]gossip.AgentLoad // by agent id; owner is the agent's node part
	addrs map[string]string
}

func (g *fakeGossip) NodeAlive(node string) bool { return g.alive[node] }
func (g *fakeGossip) LoadOf(agentID, owner string) (gossip.AgentLoad, bool) {
	l, ok := g.loads[agentID]
	return l, ok
}
func (g *fakeGossip) Member(name string) (gossip.Member, bool) {
	a, ok := g.addrs[name]
	return gossip.Member{Name: name, Meta: gossip.NodeMeta{QUICAddr: a}}, ok
}

type fakeLocal map[string]hub.Load

func (l fakeLocal) Serving(id string) bool { return l[id].Ready }
func (l fakeLocal) Load(id string) (hub.Load, bool) {
	v, ok := l[id]
	return v, ok
}
func (l fakeLocal) Snapshot() []hub.Load {
	var out []hub.Load
	for _, v := range l {
		out = append(out, v)
	}
	return out
}

func agent(id, node string, st meshnodev1.AgentStatus) *meshnodev1.Agent {
	key := make([]byte, ed25519.PublicKeySize)
	return &meshnodev1.Agent{Id: id, Node: node, Status: st, VotePublicKey: key,
		Capabilities: []*meshnodev1.Capability{{Name: "cap", MaxConcurrency: 4}}}
}

func newTestCatalog(t *testing.T) (*Catalog, *fakeRegistry, *fakeGossip, fakeLocal) {
	t.Helper()
	reg, local := newFakeRegistry(), fakeLocal{}
	g := &fakeGossip{alive: map[string]bool{}, loads: map[string]gossip.AgentLoad{}, addrs: map[string]string{}}
	c, err := New(Config{LocalNode: "n1", Registry: reg, Local: local})
	if err != nil {
		t.Fatal(err)
	}
	c.SetGossip(g)
	return c, reg, g, local
}

const (
	ready        = meshnodev1.AgentStatus_AGENT_STATUS_READY
	registered   = meshnodev1.AgentStatus_AGENT_STATUS_REGISTERED
	draining     = meshnodev1.AgentStatus_AGENT_STATUS_DRAINING
	disconnected = meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED
)

// The one candidate builder: what makes an agent ready or draining, from
// the hub for local agents and from gossip (or, unreported, the registry)
// for remote ones. A flagged agent is never ready.
func TestResolveReadiness(t *testing.T) {
	c, reg, g, local := newTestCatalog(t)
	g.alive["n2"] = true
	reg.put(agent("n1/serving", "n1", registered))
	local["n1/serving"] = hub.Load{ID: "n1/serving", Ready: true, InFlight: 1, Capacity: 4}
	reg.put(agent("n1/stale", "n1", ready)) // the registry says ready; the hub knows better
	local["n1/stale"] = hub.Load{ID: "n1/stale"}
	reg.put(agent("n2/reported", "n2", registered))
	g.loads["n2/reported"] = gossip.AgentLoad{AgentID: "n2/reported", Status: gossip.StatusReady, InFlight: 2}
	reg.put(agent("n2/unreported", "n2", ready))
	reg.put(agent("n2/drain", "n2", draining))
	flagged := agent("n2/flagged", "n2", ready)
	flagged.Flagged = true
	reg.put(flagged)
	reg.put(agent("n3/dead-node", "n3", ready))
	reg.put(agent("n2/gone", "n2", disconnected))
	g.loads["n2/gone"] = gossip.AgentLoad{AgentID: "n2/gone", Status: gossip.StatusUnknown}

	// The router measures the calls it makes to local agents itself: the
	// node's own figures for them must not come back as if gossiped.
	c.Observe("n1/serving", 1000, false)
	cands, pol, err := c.Resolve(context.Background(), "cap")
	if err != nil {
		t.Fatal(err)
	}
	for _, cd := range cands {
		if cd.AgentID == "n1/serving" && (cd.Load.HasSuccessRate || cd.Load.EWMALatency != 0 || cd.Load.InFlight != 1) {
			t.Fatalf("local candidate load %+v, want only the hub's in-flight count", cd.Load)
		}
	}
	if pol.Name != routing.DefaultPolicy().Name {
		t.Fatalf("policy %q, want the default", pol.Name)
	}
	type view struct{ ready, draining, alive bool }
	got := map[string]view{}
	for _, cd := range cands {
		got[cd.AgentID] = view{cd.Ready, cd.Draining, cd.NodeAlive}
	}
	want := map[string]view{
		"n1/serving":    {true, false, true},
		"n1/stale":      {false, false, true},
		"n2/reported":   {true, false, true},
		"n2/unreported": {true, false, true},
		"n2/drain":      {false, true, true},
		"n2/flagged":    {false, false, true},
		"n3/dead-node":  {false, false, false},
		"n2/gone":       {false, false, true},
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: ready/draining/alive = %+v, want %+v", id, got[id], w)
		}
	}
	// Voters are the ready, unflagged agents with keys: the same rule.
	voters, err := c.Voters(context.Background(), &meshnodev1.VoterSelection{Capability: "cap"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range voters {
		ids = append(ids, v.AgentID)
	}
	slices.Sort(ids)
	if wantIDs := []string{"n1/serving", "n2/reported", "n2/unreported"}; !slices.Equal(ids, wantIDs) {
		t.Fatalf("voters %v, want %v", ids, wantIDs)
	}
}

// Policies: the capability's own, else "*", else the built-in default;
// cached per registry index, so a new policy is seen at once and an
// unchanged registry is not read again.
func TestPolicyForCachesPerIndex(t *testing.T) {
	c, reg, _, _ := newTestCatalog(t)
	ctx := context.Background()
	if p, err := c.PolicyFor(ctx, "cap"); err != nil || p.Name != routing.DefaultPolicy().Name {
		t.Fatalf("default: %+v %v", p, err)
	}
	reg.putPolicy(t, &meshnodev1.RoutingPolicy{Capability: "*", Policy: "cost"})
	if p, err := c.PolicyFor(ctx, "cap"); err != nil || p.Name != routing.Cost {
		t.Fatalf("cluster default: %+v %v", p, err)
	}
	reg.putPolicy(t, &meshnodev1.RoutingPolicy{Capability: "cap", Policy: "latency", MaxHops: 3})
	if p, err := c.PolicyFor(ctx, "cap"); err != nil || p.Name != routing.Latency || p.MaxHops != 3 {
		t.Fatalf("own: %+v %v", p, err)
	}
	before := reg.reads
	for range 10 {
		if _, err := c.PolicyFor(ctx, "cap"); err != nil {
			t.Fatal(err)
		}
	}
	if reg.reads != before {
		t.Fatalf("%d registry reads for an unchanged index, want 0", reg.reads-before)
	}
	reg.mu.Lock()
	reg.policies["bad"] = &meshnodev1.PolicyRecord{Key: "bad", Policy: []byte{0xff}}
	reg.index++
	reg.mu.Unlock()
	if _, err := c.PolicyFor(ctx, "bad"); err == nil {
		t.Fatal("a corrupt stored policy was accepted")
	}
}

func TestNodeAddressPrefersGossip(t *testing.T) {
	c, reg, g, _ := newTestCatalog(t)
	reg.nodes["n2"] = &meshnodev1.NodeRecord{Name: "n2", Address: "10.0.0.2:7946"}
	if a, ok := c.NodeAddress("n2"); !ok || a != "10.0.0.2:7946" {
		t.Fatalf("from the registry: %q %v", a, ok)
	}
	g.addrs["n2"] = "10.0.0.9:7946"
	if a, ok := c.NodeAddress("n2"); !ok || a != "10.0.0.9:7946" {
		t.Fatalf("from gossip: %q %v", a, ok)
	}
	if _, ok := c.NodeAddress("nobody"); ok {
		t.Fatal("an address for an unknown node")
	}
}

func TestLoadReport(t *testing.T) {
	c, _, _, local := newTestCatalog(t)
	local["n1/a"] = hub.Load{ID: "n1/a", Ready: true, InFlight: 2, Capacity: 4}
	local["n1/b"] = hub.Load{ID: "n1/b", InFlight: 1}
	c.Observe("n1/a", 1000, true)
	node, agents := c.LoadReport()
	if node.InFlight != 3 || len(agents) != 2 {
		t.Fatalf("node %+v, %d agents", node, len(agents))
	}
	for _, a := range agents {
		wantReady := a.AgentID == "n1/a"
		if (a.Status == gossip.StatusReady) != wantReady {
			t.Errorf("%s status %v", a.AgentID, a.Status)
		}
		if a.AgentID == "n1/a" && a.EWMALatency != 1000 {
			t.Errorf("n1/a latency %v, want 1µs", a.EWMALatency)
		}
	}
}
