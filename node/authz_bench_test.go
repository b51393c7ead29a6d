package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/benchutil"
)

// benchRBAC is a deny-mode policy of 20 call rules, the one that allows
// the bench's calls last, plus bindings and serve rules.
func benchRBAC() string {
	var b strings.Builder
	b.WriteString("mode: deny\nbindings:\n  - agent: \"bench-caller\"\n    roles: [processing]\n  - agent: \"bench.*\"\n    roles: [bench]\n")
	for i := range 8 {
		fmt.Fprintf(&b, "  - node: \"zz%d\"\n    roles: [r%d]\n", i, i)
	}
	b.WriteString("call_rules:\n")
	for i := range 18 {
		fmt.Fprintf(&b, "  - from_role: r%d\n    to_capability: \"svc%d.*\"\n    action: allow\n", i%8, i)
	}
	b.WriteString("  - from_role: processing\n    to_capability: \"admin.*\"\n    action: deny\n")
	b.WriteString("  - from_role: processing\n    to_capability: \"bench.*\"\n    action: allow\n")
	b.WriteString("serve_rules:\n  - capability: \"bench.*\"\n    roles: [bench]\n")
	return b.String()
}

// BenchmarkAuthzCallPath: remote calls made by an agent, in one cluster,
// with authorization off (mode allow, no rules: the gate's fast path, as
// with no policy) and under a deny-mode policy of 20 call rules (checked at
// the caller's node and again at the callee's). It reports both and the
// ratios, from the same process and the same cluster.
func BenchmarkAuthzCallPath(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchAuthzCallPath(b)
	}
}

func benchAuthzCallPath(b *testing.B) {
	const callers, window = 32, 3 * time.Second
	nodes := startCluster(b)
	echo := &agent.Agent{Name: "bench.remote", Socket: nodes[1].socket, MaxInFlight: 256}
	echo.Handle(agent.Capability{Name: "bench.remote"}, func(_ context.Context, r *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: r.Payload}, nil
	})
	runAgent(b, echo)
	caller := &agent.Agent{Name: "bench-caller", Socket: nodes[0].socket, MaxInFlight: 256}
	caller.Handle(agent.Capability{Name: "bench.caller"}, func(context.Context, *agent.Request) (*agent.Response, error) { return &agent.Response{}, nil })
	runAgent(b, caller)
	waitFor(b, 30*time.Second, "bench agents ready", func() bool {
		return len(readyAgents(nil, nodes[0], "bench.remote")) == 1 && len(readyAgents(nil, nodes[0], "bench.caller")) == 1
	})
	payload := make([]byte, 64)
	call := func(ctx context.Context) error {
		_, err := caller.Call(ctx, "bench.remote", payload)
		return err
	}
	// Phases alternate (off, on, off, on) and are summed per mode, so a
	// shared machine's drift and the cluster's warm-up fall on both.
	var calls, cpu [2]float64
	run := func(mode int) {
		benchutil.Load(8, 300*time.Millisecond, call)
		c0 := benchutil.SelfCPU()
		lat, errs := benchutil.Load(callers, window, call)
		if errs > 0 {
			b.Fatalf("%d calls failed", errs)
		}
		cpu[mode] += benchutil.SelfCPU() - c0
		calls[mode] += float64(len(lat))
	}
	for range 2 {
		setAuthzPolicy(b, nodes, "mode: allow\n")
		run(0)
		setAuthzPolicy(b, nodes, benchRBAC())
		run(1)
	}
	type result struct{ perSec, cpuPerK float64 }
	off := result{calls[0] / (2 * window.Seconds()), cpu[0] / calls[0] * 1000}
	on := result{calls[1] / (2 * window.Seconds()), cpu[1] / calls[1] * 1000}
	b.ReportMetric(off.perSec, "off-calls/s")
	b.ReportMetric(on.perSec, "on-calls/s")
	b.ReportMetric(off.cpuPerK, "off-cpu-s/1k")
	b.ReportMetric(on.cpuPerK, "on-cpu-s/1k")
	b.ReportMetric(on.cpuPerK/off.cpuPerK, "on/off-cpu")
	b.ReportMetric(on.perSec/off.perSec, "on/off-throughput")
}
