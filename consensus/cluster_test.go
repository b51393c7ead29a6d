package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

// testNode is one node of an in-process cluster over real QUIC.
type testNode struct {
	name  string
	ep    *transport.Endpoint
	cfg   Config
	store *Store
}

type testCluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*testNode
}

// fastConfig shortens the timers so tests and benchmarks converge quickly
// on a shared 2-core machine, without making elections flap.
func fastConfig(t testing.TB, name string, server bool) Config {
	cfg := Config{
		Name:                name,
		Server:              server,
		HeartbeatTimeout:    400 * time.Millisecond,
		ElectionTimeout:     400 * time.Millisecond,
		LeaderLeaseTimeout:  200 * time.Millisecond,
		CommitTimeout:       20 * time.Millisecond,
		ServerStabilization: 300 * time.Millisecond,
		DeadServerGrace:     3 * time.Second,
		AutopilotInterval:   100 * time.Millisecond,
		ReplicaHeartbeat:    200 * time.Millisecond,
		ApplyTimeout:        5 * time.Second,
		Logger:              testLogger(t),
	}
	if server {
		cfg.DataDir = filepath.Join(t.TempDir(), name)
	}
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return transporttest.Logger(t)
	}
	return slog.New(slog.DiscardHandler)
}

// newCluster starts servers s0..s(n-1) (s0 bootstraps) and clients
// c0..c(m-1), and waits until every server is a member and there are
// min(n, Voters) voters.
func newCluster(t testing.TB, servers, clients int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	for i := range servers {
		cfg := fastConfig(t, fmt.Sprintf("s%d", i), true)
		cfg.Bootstrap = i == 0
		if tweak != nil {
			tweak(&cfg)
		}
		c.add(cfg)
	}
	c.gossip()
	c.waitVoters(min(servers, c.nodes[0].cfg.withDefaults().Voters), servers)
	for i := range clients {
		cfg := fastConfig(t, fmt.Sprintf("c%d", i), false)
		if tweak != nil {
			tweak(&cfg)
		}
		c.add(cfg)
	}
	c.gossip()
	t.Cleanup(c.close)
	return c
}

func (c *testCluster) add(cfg Config) *testNode {
	c.t.Helper()
	n := &testNode{name: cfg.Name, cfg: cfg, ep: newTestEndpoint(c.t, cfg.Name)}
	n.start(c.t)
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

func (n *testNode) start(t testing.TB) {
	t.Helper()
	s, err := New(n.cfg, NetworkFromTransport(n.ep))
	if err != nil {
		t.Fatalf("new store %s: %v", n.name, err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start store %s: %v", n.name, err)
	}
	n.store = s
}

func (n *testNode) addr() string { return n.ep.Addr().String() }

// gossip plays the node's role: tell every store which servers are alive.
func (c *testCluster) gossip() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		for _, m := range c.nodes {
			if m.cfg.Server && m.store != nil && !m.store.closed.Load() {
				n.store.ServerAlive(m.name, m.addr())
			}
		}
	}
}

// kill stops n's store (its endpoint stays, as after a crashed process whose
// port is reused) and tells the others it failed.
func (c *testCluster) kill(n *testNode) {
	c.t.Helper()
	if err := n.store.Close(); err != nil {
		c.t.Logf("closing %s: %v", n.name, err)
	}
	for _, m := range c.nodes {
		if m != n {
			m.store.ServerFailed(n.name)
		}
	}
}

// restart starts n again on the same endpoint and data directory.
func (c *testCluster) restart(n *testNode) {
	c.t.Helper()
	n.cfg.Bootstrap = false
	n.start(c.t)
	c.gossip()
}

func (c *testCluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.store.Close() }()
	}
	wg.Wait()
}

func (c *testCluster) servers() []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if n.cfg.Server {
			out = append(out, n)
		}
	}
	return out
}

func (c *testCluster) client(i int) *testNode {
	for _, n := range c.nodes {
		if n.name == fmt.Sprintf("c%d", i) {
			return n
		}
	}
	c.t.Fatalf("no client c%d", i)
	return nil
}

// leader waits for a live leader and returns it.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	var l *testNode
	waitFor(c.t, 15*time.Second, "a leader", func() bool {
		for _, n := range c.servers() {
			if !n.store.closed.Load() && n.store.srv.isLeader() {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func (c *testCluster) waitVoters(voters, members int) {
	c.t.Helper()
	waitFor(c.t, 20*time.Second, fmt.Sprintf("%d voters of %d servers", voters, members), func() bool {
		c.gossip()
		l := c.leaderNow()
		if l == nil {
			return false
		}
		v, m := 0, 0
		for _, s := range l.store.localServers() {
			switch s.Role {
			case RoleLeader, RoleVoter:
				v++
				m++
			case RoleNonVoter:
				m++
			}
		}
		return v == voters && m == members
	})
}

func (c *testCluster) leaderNow() *testNode {
	for _, n := range c.servers() {
		if !n.store.closed.Load() && n.store.srv.isLeader() {
			return n
		}
	}
	return nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

func agentCmd(id, capability string) *meshnodev1.Command {
	return &meshnodev1.Command{Version: CommandVersion, Op: &meshnodev1.Command_RegisterAgent{RegisterAgent: &meshnodev1.RegisterAgentCommand{
		Agent: &meshnodev1.Agent{Id: id, Name: id, Node: strings.SplitN(id, "/", 2)[0], Capabilities: []*meshnodev1.Capability{{Name: capability, Cost: 1}}},
	}}}
}

func mustApply(t testing.TB, s *Store, cmd *meshnodev1.Command) (uint64, *meshnodev1.CommandResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	idx, res, err := s.Apply(ctx, cmd)
	if err != nil {
		t.Fatalf("apply on %s: %v", s.cfg.Name, err)
	}
	return idx, res
}

var consistent = ReadOptions{Consistency: Consistent}

func TestClusterWritesFromAnyNode(t *testing.T) {
	c := newCluster(t, 3, 1, nil)
	var last uint64
	for i, n := range c.nodes {
		idx, res := mustApply(t, n.store, agentCmd(fmt.Sprintf("%s/a%d", n.name, i), "inventory.lookup"))
		if res.GetAgent().GetModifyIndex() != idx || idx <= last {
			t.Fatalf("write from %s: index %d, agent modify index %d, previous %d", n.name, idx, res.GetAgent().GetModifyIndex(), last)
		}
		last = idx
	}
	for _, n := range c.nodes {
		agents, idx, err := n.store.Agents(context.Background(), consistent, AgentFilter{Capability: "inventory.lookup"})
		if err != nil {
			t.Fatalf("consistent read on %s: %v", n.name, err)
		}
		if len(agents) != len(c.nodes) || idx < last {
			t.Fatalf("%s read %d agents at index %d, want %d at >= %d", n.name, len(agents), idx, len(c.nodes), last)
		}
	}
	st := c.client(0).store.ReplicaStatus()
	if !st.Ready || st.Server == "" {
		t.Fatalf("client replica status %+v", st)
	}
	// `meshnode members` on a client: roles come from a server.
	servers, err := c.client(0).store.Servers(context.Background())
	if err != nil || len(servers) != 3 {
		t.Fatalf("client Servers: %+v %v", servers, err)
	}
	roles := map[ServerRole]int{}
	for _, s := range servers {
		roles[s.Role]++
	}
	if roles[RoleLeader] != 1 || roles[RoleVoter] != 2 {
		t.Fatalf("client sees roles %v, want 1 leader and 2 voters", roles)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func newTestEndpoint(t testing.TB, name string) *transport.Endpoint {
	return transporttest.NewEndpoint(t, name)
}
