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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/benchutil"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// BenchmarkCallPath measures a call with every node in its own process, as
// deployed: two `meshnode` processes on loopback (n1 a server, n2 a
// client node), the agents and the callers in this process.
//
//   - local: caller -> n1 -> agent on n1;
//   - remote: caller -> n1 -> QUIC -> n2 -> agent on n2;
//   - baseline: a direct grpc-go unary call to a bare server in a child
//     process over a Unix socket, measured in the same run;
//   - chain: the same call through two bare grpc-go relays, each in its own
//     process (caller -> relay 1 -> relay 2 -> server), the remote path's
//     six process crossings with nothing else in them.
//
// Throughput uses 64 closed-loop callers for callWindow; latency is also
// taken at a paced 1,000 calls/s. CPU seconds per 1,000 calls and peak RSS
// are each node process's own, read from /proc.
func BenchmarkCallPath(b *testing.B) {
	for range b.N {
		benchCallPath(b)
	}
}

const (
	callers    = 64
	callWindow = 1500 * time.Millisecond // per round
	pacedRate  = 1000
	pacedFor   = 1500 * time.Millisecond // per round
	// rounds interleaves the paths: each round runs every path once, so
	// the shared machine's noise falls on all of them alike.
	rounds = 2
)

// callResult accumulates one path's rounds.
type callResult struct {
	lat    []time.Duration
	paced  []time.Duration
	errs   int
	calls  int                // closed-loop calls, for CPU per call
	cpuSec map[string]float64 // process -> CPU seconds during the closed-loop windows
}

func (r *callResult) perSec() float64 { return float64(len(r.lat)) / (callWindow.Seconds() * rounds) }

// cpuPer1k is a process's CPU seconds per 1,000 closed-loop calls.
func (r *callResult) cpuPer1k(name string) float64 {
	if r.calls == 0 {
		return 0
	}
	return r.cpuSec[name] / float64(r.calls) * 1000
}

func benchCallPath(b *testing.B) {
	root := shortTempDir(b)
	p1 := freeUDPPort(b)
	n1 := startNode(b, filepath.Join(root, "n1"), "--name", "n1", "--bind", "127.0.0.1:"+strconv.Itoa(p1))
	n1.waitReady(b, 30*time.Second)
	token, errOut, code := runCLI(b, nil, "token", "create", "--name", "n2", "--socket", n1.socket)
	if code != 0 {
		b.Fatalf("token create: %s", errOut)
	}
	n2 := startNode(b, filepath.Join(root, "n2"), "--name", "n2", "--join", "127.0.0.1:"+strconv.Itoa(p1), "--token", strings.TrimSpace(token))
	n2.waitReady(b, 60*time.Second)

	echo := func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: r.Payload}, nil
	}
	for _, spec := range []struct {
		n   *proc
		cap string
	}{{n1, "bench.local"}, {n2, "bench.remote"}} {
		a := &agent.Agent{Name: spec.cap, Socket: spec.n.socket, MaxInFlight: 256}
		a.Handle(agent.Capability{Name: spec.cap}, echo)
		runAgent(b, a)
	}
	conn, err := grpc.NewClient("unix://"+n1.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	reg := meshnodev1.NewRegistryServiceClient(conn)
	wtWait(b, 60*time.Second, "n1 sees both bench agents ready", func() bool {
		for _, c := range []string{"bench.local", "bench.remote"} {
			resp, err := reg.Discover(context.Background(), &meshnodev1.DiscoverRequest{Capability: c})
			if err != nil || len(resp.GetAgents()) != 1 || resp.GetAgents()[0].GetLoad().GetStatus() != "ready" {
				return false
			}
		}
		return true
	})
	inv := meshnodev1.NewInvokeServiceClient(conn)
	payload := make([]byte, 64)
	callCap := func(capability string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: capability, Payload: payload,
				Deadline: timestamppb.New(time.Now().Add(10 * time.Second))})
			return err
		}
	}
	baseCall, basePid := benchutil.StartBaseline(b, root)
	chainCall, chainPids := benchutil.StartRelayChain(b, root)

	// Warm up every path (connections, pools, JIT-free but cache-cold code).
	for _, call := range []func(context.Context) error{callCap("bench.local"), callCap("bench.remote"), baseCall, chainCall} {
		benchutil.Load(8, 300*time.Millisecond, call)
	}
	nodes := map[string]int{"n1": n1.cmd.Process.Pid, "n2": n2.cmd.Process.Pid}
	type path struct {
		call func(context.Context) error
		pids map[string]int
		res  *callResult
	}
	local, remote, baseline, chain := &callResult{}, &callResult{}, &callResult{}, &callResult{}
	paths := []path{
		{callCap("bench.local"), nodes, local},
		{callCap("bench.remote"), nodes, remote},
		{baseCall, map[string]int{"server": basePid}, baseline},
		{chainCall, map[string]int{"relay1": chainPids[0], "relay2": chainPids[1]}, chain},
	}
	for range rounds {
		for _, p := range paths {
			runRound(b, p.res, p.call, p.pids)
		}
	}

	us := benchutil.Micros
	b.ReportMetric(local.perSec(), "local-calls/s")
	b.ReportMetric(us(local.lat, 0.5), "local-p50-us")
	b.ReportMetric(us(local.lat, 0.99), "local-p99-us")
	b.ReportMetric(remote.perSec(), "remote-calls/s")
	b.ReportMetric(us(remote.lat, 0.5), "remote-p50-us")
	b.ReportMetric(us(remote.lat, 0.99), "remote-p99-us")
	b.ReportMetric(baseline.perSec(), "baseline-calls/s")
	b.ReportMetric(us(baseline.lat, 0.5), "baseline-p50-us")
	b.ReportMetric(us(baseline.lat, 0.99), "baseline-p99-us")
	b.ReportMetric(remote.perSec()/baseline.perSec(), "remote/baseline-throughput")
	b.ReportMetric(us(local.paced, 0.5), "local-p50-us@1k/s")
	b.ReportMetric(us(local.paced, 0.99), "local-p99-us@1k/s")
	b.ReportMetric(us(remote.paced, 0.5), "remote-p50-us@1k/s")
	b.ReportMetric(us(remote.paced, 0.99), "remote-p99-us@1k/s")
	b.ReportMetric(us(baseline.paced, 0.5), "baseline-p50-us@1k/s")
	b.ReportMetric(us(baseline.paced, 0.99), "baseline-p99-us@1k/s")
	b.ReportMetric(us(remote.paced, 0.5)-us(baseline.paced, 0.5), "remote-added-p50-us@1k/s")
	b.ReportMetric(us(remote.paced, 0.99)-us(baseline.paced, 0.99), "remote-added-p99-us@1k/s")
	b.ReportMetric(local.cpuPer1k("n1"), "n1-cpu-s/1k-local-calls")
	b.ReportMetric(remote.cpuPer1k("n1"), "n1-cpu-s/1k-remote-calls")
	b.ReportMetric(remote.cpuPer1k("n2"), "n2-cpu-s/1k-remote-calls")
	// The floor for comparison: what a bare grpc-go server spends per call.
	b.ReportMetric(baseline.cpuPer1k("server"), "baseline-server-cpu-s/1k-calls")
	for name, pid := range nodes {
		if rss, err := benchutil.ProcessPeakRSS(pid); err == nil {
			b.ReportMetric(rss, name+"-peak-rss-MiB")
		}
	}
	// The same six process crossings with nothing but grpc-go relays in
	// them: how much of the remote path's latency and CPU the topology
	// itself costs on this machine.
	b.ReportMetric(chain.perSec(), "chain-calls/s")
	b.ReportMetric(us(chain.paced, 0.5), "chain-p50-us@1k/s")
	b.ReportMetric(us(chain.paced, 0.99), "chain-p99-us@1k/s")
	b.ReportMetric(us(remote.paced, 0.5)-us(chain.paced, 0.5), "remote-over-chain-p50-us@1k/s")
	b.ReportMetric(us(remote.paced, 0.99)-us(chain.paced, 0.99), "remote-over-chain-p99-us@1k/s")
	b.ReportMetric(chain.cpuPer1k("relay1"), "relay1-cpu-s/1k-calls")
	b.ReportMetric(chain.cpuPer1k("relay2"), "relay2-cpu-s/1k-calls")
	b.ReportMetric(remote.cpuPer1k("n1")/chain.cpuPer1k("relay1"), "n1/relay1-cpu")
	b.ReportMetric(remote.cpuPer1k("n2")/chain.cpuPer1k("relay2"), "n2/relay2-cpu")
	b.ReportMetric(remote.perSec()/chain.perSec(), "remote/chain-throughput")
	b.ReportMetric(float64(local.errs+remote.errs+baseline.errs+chain.errs), "errors")
}

// runRound adds one closed-loop window and one paced window of call to r,
// with the CPU the given processes spent in the closed-loop window.
func runRound(tb testing.TB, r *callResult, call func(context.Context) error, pids map[string]int) {
	if r.cpuSec == nil {
		r.cpuSec = map[string]float64{}
	}
	var lat []time.Duration
	var errs int
	if err := benchutil.CPUDuring(r.cpuSec, pids, func() { lat, errs = benchutil.Load(callers, callWindow, call) }); err != nil {
		tb.Fatal(err)
	}
	r.lat, r.errs, r.calls = append(r.lat, lat...), r.errs+errs, r.calls+len(lat)
	r.paced = append(r.paced, benchutil.Paced(pacedRate, pacedFor, call)...)
}

// runAgent serves a in the background until the benchmark ends.
func runAgent(tb testing.TB, a *agent.Agent) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Serve(ctx) }()
	tb.Cleanup(func() { cancel(); <-done; a.Close() })
}
