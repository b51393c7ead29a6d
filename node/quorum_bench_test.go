package node_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/benchutil"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// BenchmarkQuorumDecision measures end-to-end decisions (fan-out over QUIC,
// signed votes from SDK agents, tally, Raft commit) on four nodes with 4
// voters (one per host, BFT f=1) and 7 voters (5-of-7 on shared hosts).
// The in-run baseline is a plain registry write through Raft from the same
// node: the one commit every decision pays for.
func BenchmarkQuorumDecision(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchQuorum(b)
	}
}

func benchQuorum(b *testing.B) {
	// Three Raft voters (n1, n2, n4), as a production cluster has, and n3 a
	// client. Servers join as non-voters and are promoted once stable;
	// measuring before that would time a one-voter log.
	nodes := startCluster(b)
	root, _ := os.MkdirTemp("", "mnq")
	b.Cleanup(func() { os.RemoveAll(root) })
	nodes = append(nodes, startTestNode(b, root, "n4", true, []string{nodes[0].addr}, nodes[0].token(b, true, "n4")))
	waitFor(b, 60*time.Second, "n1, n2 and n4 are Raft voters", func() bool {
		v, err := benchutil.RaftVoters(context.Background(), meshnodev1.NewNodeServiceClient(nodes[0].conn(b)))
		return err == nil && v == 3
	})
	// Voters: v0 on every node (4), plus v1 on three nodes (7 in all).
	for i, n := range nodes {
		names := []string{"v0"}
		if i < 3 {
			names = append(names, "v1")
		}
		for _, name := range names {
			a := &agent.Agent{Name: name, Socket: n.socket}
			a.Handle(agent.Capability{Name: "cap-" + name}, echoFrom(n.name))
			a.HandleVote("", voter(agent.Approve))
			runAgent(b, a)
		}
	}
	waitFor(b, 30*time.Second, "voters ready", func() bool {
		return len(readyAgents(b, nodes[0], "cap-v0")) == 4 && len(readyAgents(b, nodes[0], "cap-v1")) == 3
	})
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.name+"/v0")
	}
	for _, n := range nodes[:3] {
		ids = append(ids, n.name+"/v1")
	}
	q := meshnodev1.NewQuorumServiceClient(nodes[0].conn(b))
	// BFT forbids shared hosts; 7 voters on 4 hosts use 5-of-7, the same
	// threshold as BFT's 2f+1 at n = 7.
	rule := func(shared bool) *meshnodev1.QuorumRule {
		if shared {
			return &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 5, AllowSharedHosts: true}
		}
		return &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}
	}
	propose := func(voters []string, shared bool) error {
		return benchutil.Decide(context.Background(), q, voters, rule(shared))
	}
	reg := meshnodev1.NewRegistryServiceClient(nodes[0].conn(b))
	write := func(ctx context.Context) error { return benchutil.RegistryWrite(ctx, reg) }
	// Registry and gossip can disagree for a moment after an agent starts
	// serving (an older "not serving" report still in flight), so the
	// first decision is retried until every voter is eligible.
	waitFor(b, 30*time.Second, "a first decision", func() bool { return propose(ids[:4], false) == nil })
	measure := func(n int, f func() error) []time.Duration {
		var lat []time.Duration
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if err := f(); err != nil {
				b.Fatalf("decision: %v", err)
			}
			lat = append(lat, time.Since(t0))
		}
		return lat
	}
	four := measure(100, func() error { return propose(ids[:4], false) })
	seven := measure(60, func() error { return propose(ids, true) })
	commits := measure(100, func() error { return write(context.Background()) })
	// Throughput: 8 proposers at once, 4 voters.
	var wg sync.WaitGroup
	var done atomic.Int64
	start := time.Now()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 3*time.Second {
				if propose(ids[:4], false) == nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(benchutil.Micros(four, 0.5)/1000, "4-voters-p50-ms")
	b.ReportMetric(benchutil.Micros(four, 0.99)/1000, "4-voters-p99-ms")
	b.ReportMetric(benchutil.Micros(seven, 0.5)/1000, "7-voters-p50-ms")
	b.ReportMetric(benchutil.Micros(seven, 0.99)/1000, "7-voters-p99-ms")
	b.ReportMetric(float64(done.Load())/time.Since(start).Seconds(), "4-voter-decisions/s")
	b.ReportMetric(benchutil.Micros(commits, 0.5)/1000, "baseline-raft-write-p50-ms")
	b.ReportMetric(benchutil.Micros(four, 0.5)/benchutil.Micros(commits, 0.5), "4-voters/raft-write-p50")
}
