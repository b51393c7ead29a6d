package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Scenario 1: nodes join from a seed list in any start order, including
// seeds that are not up yet. Node n1 bootstraps (the tokens come from its
// CA); the others start at once in reverse order, each with every other
// node as a seed, not-yet-started ones first. Fast mode runs 3 nodes, full
// mode 5 (3 servers, 2 clients). A node that exits while starting fails
// the test.
func TestScenario1JoinAnyOrder(t *testing.T) {
	// The fast subset uses servers only; full mode adds two client nodes.
	n, servers := 3, 3
	if fullMode() {
		n, servers = 5, 3
	}
	c := newCluster(t, n, servers)
	c.bootstrap()
	joiners := c.nodes[1:]
	for _, m := range joiners {
		m.token = c.createToken(m)
	}
	// Reverse start order; each joiner's seeds list the nodes started after
	// it first, so its first seeds are down when it starts.
	var order []string
	seedsDown := 0
	for k := len(joiners) - 1; k >= 0; k-- {
		m := joiners[k]
		for _, later := range joiners[:k] {
			m.seeds = append(m.seeds, later.addr)
			seedsDown++
		}
		m.seeds = append(m.seeds, c.nodes[0].addr)
		order = append(order, m.name)
	}
	prog := newProgress(t)
	prog.set("nodes=%d servers=%d start order n1,%s; seeds down at start=%d; waiting for every node to start and converge",
		n, servers, strings.Join(order, ","), seedsDown)
	begin := time.Now()
	for k := len(joiners) - 1; k >= 0; k-- {
		joiners[k].start()
	}
	for _, m := range joiners {
		m.waitReady(180 * time.Second)
	}
	c.waitConverged(180 * time.Second)
	wantVoters := min(3, servers)
	waitUntil(t, 120*time.Second, fmt.Sprintf("%d Raft voters", wantVoters), func() bool {
		v, err := c.nodes[0].members(t.Context())
		return err == nil && v.voters == wantVoters
	})
	took := time.Since(begin)
	// Every node sees the same set of members, and the CLI agrees.
	for _, m := range c.nodes {
		out, errOut, code := m.cli("members")
		if code != 0 {
			t.Fatalf("%s: meshnode members: exit %d: %s", m.name, code, errOut)
		}
		for _, o := range c.nodes {
			if !strings.Contains(out, o.name) {
				t.Fatalf("%s: members does not list %s:\n%s", m.name, o.name, out)
			}
		}
	}
	summary(t, "nodes=%d servers=%d start order n1,%s; seeds down at start=%d; ops=%d joins; errors=0; faults=0; converged (all alive, leader, %d voters) in %v",
		n, servers, strings.Join(order, ","), seedsDown, len(joiners), wantVoters, took.Round(time.Millisecond))
}

// Scenario 4: a node whose agent serves a capability is killed; calls to the
// capability fail over to the agent on another node, and callers see < 1%
// errors over the run.
func TestScenario4AgentNodeKilled(t *testing.T) {
	c := newCluster(t, 3, 3)
	c.startAll()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	prog := newProgress(t)
	prog.set("setting up 3 nodes and 2 agents")
	n2.serveAgent("echo-a", "e2e.echo")
	n3.serveAgent("echo-b", "e2e.echo")
	waitDiscoverReady(t, n1, "e2e.echo", 2)

	load := n1.startLoad("e2e.echo", 5*time.Minute, 4)
	waitCalls(t, load, 200)
	killed := time.Now()
	n3.kill()
	prog.set("faults=1 (SIGKILL of n3); load before the kill: %v", load.progress())
	// Keep calling until n2's agent has answered plenty after the kill.
	before := servedBy(load, "n2/echo-a")
	waitUntil(t, 120*time.Second, "calls served by n2/echo-a after n3 was killed", func() bool {
		return servedBy(load, "n2/echo-a") >= before+1000
	})
	counts := load.finish()
	recovered := counts.errorsUntil(killed)
	t.Logf("load: %v; samples: %v", counts, counts.Samples)
	if counts.total() < 500 {
		t.Fatalf("only %d calls were made: the load did not run", counts.total())
	}
	if counts.errorRate() >= 0.01 {
		t.Errorf("error rate %.2f%% over the run, want < 1%%: %v", 100*counts.errorRate(), counts.Samples)
	}
	summary(t, "ops=%d calls; errors=%d (%.3f%%); faults=1 (SIGKILL of n3 with agent echo-b); failed calls stopped %v after the kill; served by %v",
		counts.total(), counts.Errors, 100*counts.errorRate(), recovered.Round(time.Millisecond), counts.ByAgent)
}
