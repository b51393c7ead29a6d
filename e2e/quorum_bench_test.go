package e2e

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/benchutil"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// BenchmarkQuorumProcesses measures decisions with every node in its own
// process, as deployed: four `meshnode` processes on loopback (n1, n2 and n4
// Raft voters, n3 a client node), one voter agent on each (BFT, f = 1), the
// agents and the proposer in this process. Two baselines run in the same
// rounds, so the disk's noise falls on all three alike:
//
//   - a plain registry write through Raft from the same node, the one
//     commit every decision pays for;
//   - a bare commit: hashicorp/raft + raft-boltdb/v2 alone, three servers in
//     three processes over loopback TCP, an entry the size of a decision's,
//     an FSM that does nothing. It is the floor for the commit in this
//     topology with nothing of meshnode in it.
//
// CPU is each node process's own, per decision.
func BenchmarkQuorumProcesses(b *testing.B) {
	for range b.N {
		benchQuorumProcesses(b)
	}
}

const (
	quorumRounds      = 4
	decisionsPerRound = 50
)

func benchQuorumProcesses(b *testing.B) {
	root := shortTempDir(b)
	seed := "127.0.0.1:" + strconv.Itoa(freeUDPPort(b))
	n1 := startNode(b, filepath.Join(root, "n1"), "--name", "n1", "--bind", seed)
	n1.waitReady(b, 30*time.Second)
	nodes := map[string]*proc{"n1": n1}
	for _, spec := range []struct {
		name   string
		server bool
	}{{"n2", true}, {"n3", false}, {"n4", true}} {
		args := []string{"token", "create", "--name", spec.name, "--socket", n1.socket}
		run := []string{"--name", spec.name, "--join", seed}
		if spec.server {
			args = append(args, "--server")
			run = append(run, "--server")
		}
		token, errOut, code := runCLI(b, nil, args...)
		if code != 0 {
			b.Fatalf("token create: %s", errOut)
		}
		p := startNode(b, filepath.Join(root, spec.name), append(run, "--token", strings.TrimSpace(token))...)
		p.waitReady(b, 60*time.Second)
		nodes[spec.name] = p
	}
	conn, err := grpc.NewClient("unix://"+n1.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	// Servers join as non-voters and are promoted once stable; measuring
	// before that would time a one-voter log.
	wtWait(b, 60*time.Second, "n1, n2 and n4 are Raft voters", func() bool {
		v, err := benchutil.RaftVoters(context.Background(), meshnodev1.NewNodeServiceClient(conn))
		return err == nil && v == 3
	})
	var ids []string
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		// Eight proposers at once ask each voter up to eight votes at once;
		// the default of 4 running vote handlers would shed the rest.
		a := &agent.Agent{Name: "voter", Socket: nodes[name].socket, MaxVotesInFlight: 32}
		a.Handle(agent.Capability{Name: "bench.voter"}, func(context.Context, *agent.Request) (*agent.Response, error) {
			return &agent.Response{}, nil
		})
		a.HandleVote("", func(context.Context, *meshnodev1.Proposal) (agent.Choice, string, error) {
			return agent.Approve, "", nil
		})
		runAgent(b, a)
		ids = append(ids, name+"/voter")
	}
	q := meshnodev1.NewQuorumServiceClient(conn)
	bft := &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}
	propose := func(ctx context.Context) error { return benchutil.Decide(ctx, q, ids, bft) }
	reg := meshnodev1.NewRegistryServiceClient(conn)
	write := func(ctx context.Context) error { return benchutil.RegistryWrite(ctx, reg) }
	// An agent's ready state reaches the other nodes by gossip; until it
	// has, the coordinator refuses it as a voter.
	wtWait(b, 60*time.Second, "a first decision", func() bool { return propose(context.Background()) == nil })

	pids := map[string]int{}
	for name, p := range nodes {
		pids[name] = p.cmd.Process.Pid
	}
	measure := func(f func(context.Context) error, lat *[]time.Duration, cpuSec map[string]float64) {
		err := benchutil.CPUDuring(cpuSec, pids, func() {
			for range decisionsPerRound {
				t0 := time.Now()
				if err := f(context.Background()); err != nil {
					b.Fatal(err)
				}
				*lat = append(*lat, time.Since(t0))
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	rawCommit, _ := benchutil.StartRawRaft(b, root)
	var decisions, writes, raw []time.Duration
	decisionCPU, writeCPU, rawCPU := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for range quorumRounds {
		measure(propose, &decisions, decisionCPU)
		measure(write, &writes, writeCPU)
		measure(rawCommit, &raw, rawCPU)
	}
	b.ReportMetric(benchutil.Micros(decisions, 0.5)/1000, "4-voters-p50-ms")
	b.ReportMetric(benchutil.Micros(decisions, 0.99)/1000, "4-voters-p99-ms")
	b.ReportMetric(benchutil.Micros(writes, 0.5)/1000, "baseline-raft-write-p50-ms")
	b.ReportMetric(benchutil.Micros(decisions, 0.5)/benchutil.Micros(writes, 0.5), "4-voters/raft-write-p50")
	b.ReportMetric(benchutil.Micros(raw, 0.5)/1000, "bare-raft-commit-p50-ms")
	b.ReportMetric(benchutil.Micros(raw, 0.99)/1000, "bare-raft-commit-p99-ms")
	b.ReportMetric(benchutil.Micros(decisions, 0.5)/benchutil.Micros(raw, 0.5), "4-voters/bare-raft-p50")
	// Throughput: 8 proposers for 2 s, as in the in-process benchmark.
	lat, errs := benchutil.Load(8, 2*time.Second, propose)
	if errs > 0 {
		b.Fatalf("%d proposals failed under load", errs)
	}
	b.ReportMetric(float64(len(lat))/2, "4-voter-decisions/s")
	n := float64(quorumRounds * decisionsPerRound)
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		b.ReportMetric(decisionCPU[name]/n*1000, name+"-cpu-ms/decision")
	}
	b.ReportMetric(writeCPU["n1"]/n*1000, "n1-cpu-ms/raft-write")
}
