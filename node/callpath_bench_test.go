package node_test

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/benchutil"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// BenchmarkCallPathInProcess is e2e's BenchmarkCallPath with the three
// nodes in this process (and the agents and callers with them): the
// node's own cost without a process wake-up per hop, which is what
// dominates the multi-process figures at moderate load on a small VM.
// CPU is this whole process's, an upper bound for the nodes' share.
func BenchmarkCallPathInProcess(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchCallPathInProcess(b)
	}
}

func benchCallPathInProcess(b *testing.B) {
	const callers, window = 64, 3 * time.Second
	nodes := startCluster(b)
	payload := make([]byte, 64)
	echo := func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: r.Payload}, nil
	}
	for _, spec := range []struct {
		n   *testNode
		cap string
	}{{nodes[0], "bench.local"}, {nodes[1], "bench.remote"}} {
		a := &agent.Agent{Name: spec.cap, Socket: spec.n.socket, MaxInFlight: 256}
		a.Handle(agent.Capability{Name: spec.cap}, echo)
		runAgent(b, a)
	}
	waitFor(b, 30*time.Second, "bench agents ready", func() bool {
		return len(readyAgents(nil, nodes[0], "bench.local")) == 1 && len(readyAgents(nil, nodes[0], "bench.remote")) == 1
	})
	conn := nodes[0].conn(b)
	inv := meshnodev1.NewInvokeServiceClient(conn)
	callCap := func(capability string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: capability, Payload: payload, Deadline: timestamppb.New(time.Now().Add(10 * time.Second))})
			return err
		}
	}

	dir, _ := os.MkdirTemp("", "mnb")
	b.Cleanup(func() { os.RemoveAll(dir) })
	baseCall, _ := benchutil.StartBaseline(b, dir)

	// Warm up every path.
	benchutil.Load(8, 300*time.Millisecond, callCap("bench.local"))
	benchutil.Load(8, 300*time.Millisecond, callCap("bench.remote"))
	benchutil.Load(8, 300*time.Millisecond, baseCall)

	type result struct {
		lat     []time.Duration
		errs    int
		cpu     float64
		paced   []time.Duration
		perSec  float64
		cpuPerK float64
	}
	run := func(call func(context.Context) error) result {
		c0 := benchutil.SelfCPU()
		lat, errs := benchutil.Load(callers, window, call)
		r := result{lat: lat, errs: errs, cpu: benchutil.SelfCPU() - c0}
		r.perSec = float64(len(lat)) / window.Seconds()
		if len(lat) > 0 {
			r.cpuPerK = r.cpu / float64(len(lat)) * 1000
		}
		r.paced = benchutil.Paced(1000, 2*time.Second, call)
		return r
	}
	local, remote, baseline := run(callCap("bench.local")), run(callCap("bench.remote")), run(baseCall)
	b.ReportMetric(local.perSec, "local-calls/s")
	b.ReportMetric(benchutil.Micros(local.lat, 0.5), "local-p50-us")
	b.ReportMetric(benchutil.Micros(local.lat, 0.99), "local-p99-us")
	b.ReportMetric(remote.perSec, "remote-calls/s")
	b.ReportMetric(benchutil.Micros(remote.lat, 0.5), "remote-p50-us")
	b.ReportMetric(benchutil.Micros(remote.lat, 0.99), "remote-p99-us")
	b.ReportMetric(baseline.perSec, "baseline-calls/s")
	b.ReportMetric(benchutil.Micros(baseline.lat, 0.5), "baseline-p50-us")
	b.ReportMetric(benchutil.Micros(baseline.lat, 0.99), "baseline-p99-us")
	b.ReportMetric(remote.perSec/baseline.perSec, "remote/baseline-throughput")
	b.ReportMetric(benchutil.Micros(remote.paced, 0.5)-benchutil.Micros(baseline.paced, 0.5), "remote-added-p50-us@1k/s")
	b.ReportMetric(benchutil.Micros(remote.paced, 0.99)-benchutil.Micros(baseline.paced, 0.99), "remote-added-p99-us@1k/s")
	b.ReportMetric(remote.cpuPerK, "process-cpu-s/1k-remote-calls")
	b.ReportMetric(local.cpuPerK, "process-cpu-s/1k-local-calls")
	b.ReportMetric(float64(local.errs+remote.errs), "errors")
}
