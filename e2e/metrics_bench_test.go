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

// BenchmarkMetricsOverhead measures what the call metrics and the traffic
// matrix cost on the remote call path: two pairs of real nodes (caller ->
// n1 -> QUIC -> n2 -> agent), one with call metrics on (the default), one
// with --call-metrics=false, driven in interleaved rounds in the same run
// so the shared machine's noise falls on both alike. Every call is made
// for a registered caller agent, so the per-pair series are the ones a
// real caller fills. Reported: calls/s and each node's CPU seconds per
// 1,000 calls, and the on/off ratios (the goal is CPU at most 1.05×).
func BenchmarkMetricsOverhead(b *testing.B) {
	for range b.N {
		benchMetricsOverhead(b)
	}
}

type metricsPair struct {
	call func(context.Context) error
	pids map[string]int
	res  *callResult
}

func startMetricsPair(b *testing.B, root, tag string, extra ...string) *metricsPair {
	p1 := freeUDPPort(b)
	args := append([]string{"--name", tag + "1", "--bind", "127.0.0.1:" + strconv.Itoa(p1), "--metrics-bind", ""}, extra...)
	n1 := startNode(b, filepath.Join(root, tag+"1"), args...)
	n1.waitReady(b, 30*time.Second)
	token, errOut, code := runCLI(b, nil, "token", "create", "--name", tag+"2", "--socket", n1.socket)
	if code != 0 {
		b.Fatalf("token create: %s", errOut)
	}
	args = append([]string{"--name", tag + "2", "--join", "127.0.0.1:" + strconv.Itoa(p1), "--token", strings.TrimSpace(token), "--metrics-bind", ""}, extra...)
	n2 := startNode(b, filepath.Join(root, tag+"2"), args...)
	n2.waitReady(b, 60*time.Second)
	capability := "bench." + tag
	callee := &agent.Agent{Name: "callee", Socket: n2.socket, MaxInFlight: 256}
	callee.Handle(agent.Capability{Name: capability}, func(_ context.Context, r *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: r.Payload}, nil
	})
	runAgent(b, callee)
	caller := &agent.Agent{Name: "caller", Socket: n1.socket}
	caller.Handle(agent.Capability{Name: "bench.caller"}, func(context.Context, *agent.Request) (*agent.Response, error) { return &agent.Response{}, nil })
	runAgent(b, caller)
	conn, err := grpc.NewClient("unix://"+n1.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	reg := meshnodev1.NewRegistryServiceClient(conn)
	wtWait(b, 60*time.Second, tag+"1 sees its bench agent ready", func() bool {
		resp, err := reg.Discover(context.Background(), &meshnodev1.DiscoverRequest{Capability: capability})
		return err == nil && len(resp.GetAgents()) == 1 && resp.GetAgents()[0].GetLoad().GetStatus() == "ready"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := caller.Up(ctx); err != nil {
		b.Fatal(err)
	}
	inv := meshnodev1.NewInvokeServiceClient(conn)
	payload := make([]byte, 64)
	call := func(ctx context.Context) error {
		_, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: capability, Payload: payload, CallerAgentId: "caller",
			Deadline: timestamppb.New(time.Now().Add(10 * time.Second))})
		return err
	}
	return &metricsPair{call: call, pids: map[string]int{"n1": n1.cmd.Process.Pid, "n2": n2.cmd.Process.Pid}, res: &callResult{}}
}

func benchMetricsOverhead(b *testing.B) {
	root := shortTempDir(b)
	on := startMetricsPair(b, root, "on")
	off := startMetricsPair(b, root, "off", "--call-metrics=false")
	for _, p := range []*metricsPair{on, off} {
		if _, errs := benchutil.Load(8, 300*time.Millisecond, p.call); errs > 0 {
			b.Fatalf("%d errors warming up", errs)
		}
	}
	for range rounds + 1 {
		for _, p := range []*metricsPair{on, off} {
			runRound(b, p.res, p.call, p.pids)
		}
	}
	b.ReportMetric(on.res.perSec(), "metrics-on-calls/s")
	b.ReportMetric(off.res.perSec(), "metrics-off-calls/s")
	b.ReportMetric(on.res.perSec()/off.res.perSec(), "on/off-throughput")
	for _, n := range []string{"n1", "n2"} {
		b.ReportMetric(on.res.cpuPer1k(n), n+"-cpu-s/1k-calls-metrics-on")
		b.ReportMetric(off.res.cpuPer1k(n), n+"-cpu-s/1k-calls-metrics-off")
		b.ReportMetric(on.res.cpuPer1k(n)/off.res.cpuPer1k(n), n+"-on/off-cpu")
	}
	b.ReportMetric(float64(on.res.errs+off.res.errs), "errors")
}
