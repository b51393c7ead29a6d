package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// pairTally is what the test itself saw of one caller→capability pair.
type pairTally struct{ ok, agentFailed, other atomic.Int64 }

func (p *pairTally) reached() int64 { return p.ok.Load() + p.agentFailed.Load() }

// TestMetricsTrafficAndPrometheus: three real nodes, agents calling each
// other across them, one agent failing half its calls. A real Prometheus
// scrapes the three nodes' /metrics listeners, and PromQL over its HTTP API
// gives the failing pair's error rate within 5 points of what the callers
// saw; `meshnode traffic --slowest 3 --json`, `--no-incoming` and
// `meshnode top --once` show the pairs the test made.
func TestMetricsTrafficAndPrometheus(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Skip("prometheus is not installed: scripts/install-deps.sh installs Debian's package")
	}
	dir := shortTempDir(t)
	var nodes []*proc
	var metricsAddrs []string
	seed := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		maddr := freeTCPAddr(t)
		args := []string{"--name", name, "--metrics-bind", maddr}
		if i == 0 {
			args = append(args, "--bind", seed)
		} else {
			tok, errOut, code := runCLI(t, nil, "token", "create", "--name", name, "--socket", nodes[0].socket)
			if code != 0 {
				t.Fatalf("token for %s: %s", name, errOut)
			}
			args = append(args, "--join", seed, "--token", strings.TrimSpace(tok))
		}
		p := startNode(t, filepath.Join(dir, name), args...)
		p.waitReady(t, 90*time.Second)
		nodes, metricsAddrs = append(nodes, p), append(metricsAddrs, maddr)
	}
	prom := startPrometheus(t, metricsAddrs)

	// Agents: callers on n1 and n3; a fast, a failing, a slow and an idle callee.
	var flakyCalls atomic.Int64
	reply := func(delay time.Duration) agent.HandlerFunc {
		return func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return &agent.Response{Payload: r.Payload}, nil
		}
	}
	agents := map[string]*agent.Agent{}
	for _, a := range []struct {
		node       int
		name, capa string
		h          agent.HandlerFunc
	}{
		{0, "planner", "planner.plan", reply(0)},
		{2, "auditor", "audit.run", reply(0)},
		{1, "lookup", "inventory.lookup", reply(2 * time.Millisecond)},
		{2, "flaky", "risk.score", func(context.Context, *agent.Request) (*agent.Response, error) {
			if flakyCalls.Add(1)%2 == 0 {
				return nil, agent.Errorf(codes.Internal, "risk model unavailable")
			}
			return &agent.Response{}, nil
		}},
		{0, "slow", "report.slow", reply(40 * time.Millisecond)},
		{1, "idle", "idle.nothing", reply(0)},
	} {
		ag := &agent.Agent{Name: a.name, Socket: nodes[a.node].socket}
		ag.Handle(agent.Capability{Name: a.capa}, a.h)
		runAgent(t, ag)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := ag.Up(ctx); err != nil {
			t.Fatalf("agent %s: %v", a.name, err)
		}
		cancel()
		agents[a.name] = ag
	}
	for _, c := range []struct {
		node int
		capa string
	}{{0, "inventory.lookup"}, {0, "risk.score"}, {2, "report.slow"}} {
		waitUntil(t, 60*time.Second, fmt.Sprintf("n%d sees %s ready", c.node+1, c.capa), func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cl, err := agent.Dial(ctx, nodes[c.node].socket)
			if err != nil {
				return false
			}
			defer cl.Close()
			found, err := cl.Discover(ctx, c.capa)
			return err == nil && len(found) > 0 && found[0].GetLoad().GetStatus() == "ready"
		})
	}

	// Keep the router sending to the failing agent (no quality floor, no
	// breaker), so the pair's error rate stays the agent's own: half.
	policyFile := filepath.Join(dir, "risk-policy.json")
	if err := os.WriteFile(policyFile, []byte(`{"qualityHardFloor": 0, "circuitBreaker": {"disabled": true}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runCLI(t, nil, "policy", "set", "risk.score", "--file", policyFile, "--socket", nodes[0].socket); code != 0 {
		t.Fatalf("policy set risk.score: %s", errOut)
	}

	// Prometheus finds its targets a few seconds after it starts: the load
	// begins once it scrapes all three, so the rates have samples to use.
	waitUntil(t, 30*time.Second, "prometheus scrapes 3 nodes", func() bool {
		v, ok := prom.query(t, `count(up{job="meshnode"} == 1)`)
		return ok && v == 3
	})

	// Load: the planner calls the fast and the failing agent, the auditor
	// the slow one, two callers each, for a few seconds.
	tallies := map[string]*pairTally{"inventory.lookup": {}, "risk.score": {}, "report.slow": {}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range []struct{ caller, capa string }{{"planner", "inventory.lookup"}, {"planner", "risk.score"}, {"auditor", "report.slow"}} {
		for range 2 {
			wg.Go(func() {
				tl := tallies[l.capa]
				for ctx.Err() == nil {
					cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := agents[l.caller].Call(cctx, l.capa, []byte("x"))
					ccancel()
					switch status.Code(err) {
					case codes.OK:
						tl.ok.Add(1)
					case codes.Internal:
						tl.agentFailed.Add(1)
					default:
						tl.other.Add(1) // refused before any agent saw it (the router's quality floor)
						time.Sleep(20 * time.Millisecond)
					}
				}
			})
		}
	}
	wg.Wait()
	risk := tallies["risk.score"]
	if risk.ok.Load() < 5 || risk.agentFailed.Load() < 5 {
		t.Fatalf("the failing pair had %d ok and %d failed calls; want at least 5 of each", risk.ok.Load(), risk.agentFailed.Load())
	}
	truth := 100 * float64(risk.agentFailed.Load()) / float64(risk.reached())

	// Prometheus: the pair's counts as the test made them.
	flaky := `caller_agent="n1/planner",callee_agent="n3/flaky",capability="risk.score"`
	var last float64
	waitUntil(t, 20*time.Second, "prometheus sees every call of n1/planner→n3/flaky", func() bool {
		last, _ = prom.query(t, `sum(meshnode_calls_total{`+flaky+`})`)
		return last == float64(risk.reached())
	}, func() string { return fmt.Sprintf("%v, want %d", last, risk.reached()) })
	errRate, ok := prom.query(t, `100 * sum(meshnode_calls_total{`+flaky+`,code!="OK"}) / sum(meshnode_calls_total{`+flaky+`})`)
	if !ok || math.Abs(errRate-truth) > 5 {
		t.Errorf("PromQL error rate of n1/planner→n3/flaky: %.1f%% (ok %v), the callers saw %.1f%%", errRate, ok, truth)
	}
	// The golden-signal form from docs/observability.md, over rates.
	rateQ := `sum(rate(meshnode_calls_total{` + flaky + `,code!="OK"}[1m])) / sum(rate(meshnode_calls_total{` + flaky + `}[1m]))`
	rateV, ok := prom.query(t, rateQ)
	if v := rateV; !ok || math.Abs(100*v-truth) > 5 {
		t.Logf("samples in the window: %s", prom.raw(t, `count_over_time(meshnode_calls_total{`+flaky+`}[1m])`))
		t.Errorf("PromQL error rate over rate() of n1/planner→n3/flaky: %.1f%% (ok %v), the callers saw %.1f%%", 100*v, ok, truth)
	}
	// n3, the callee's node, counts the same failures on its side.
	waitUntil(t, 20*time.Second, "prometheus sees n3's count of n3/flaky's failures", func() bool {
		last, _ = prom.query(t, `sum(meshnode_handled_calls_total{callee_agent="n3/flaky",code="Internal"})`)
		return last == float64(risk.agentFailed.Load())
	}, func() string { return fmt.Sprintf("%v, want %d", last, risk.agentFailed.Load()) })

	// The CLI, asked on n2, which made and served none of the slow calls.
	out, errOut, code := runCLI(t, nil, "traffic", "--slowest", "3", "--json", "--socket", nodes[1].socket)
	if code != 0 {
		t.Fatalf("traffic --slowest 3: %s", errOut)
	}
	var slowest meshnodev1.TrafficResponse
	if err := protojson.Unmarshal([]byte(out), &slowest); err != nil {
		t.Fatalf("traffic --json: %v\n%s", err, out)
	}
	if len(slowest.GetEdges()) != 3 || len(slowest.GetNodes()) != 3 {
		t.Fatalf("traffic --slowest 3: %d edges from %v, want 3 from three nodes:\n%s", len(slowest.GetEdges()), slowest.GetNodes(), out)
	}
	top := slowest.GetEdges()[0]
	if top.GetCallerAgent() != "n3/auditor" || top.GetCalleeAgent() != "n1/slow" || top.GetWindows()[1].GetRequests() != uint64(tallies["report.slow"].reached()) {
		t.Errorf("slowest pair %s→%s with %d calls, want n3/auditor→n1/slow with %d", top.GetCallerAgent(), top.GetCalleeAgent(),
			top.GetWindows()[1].GetRequests(), tallies["report.slow"].reached())
	}
	for i := 1; i < 3; i++ {
		if a, b := slowest.GetEdges()[i-1].GetWindows()[1].GetP99Ms(), slowest.GetEdges()[i].GetWindows()[1].GetP99Ms(); a < b {
			t.Errorf("--slowest is not by p99, slowest first: %.1fms before %.1fms", a, b)
		}
	}
	out, errOut, code = runCLI(t, nil, "traffic", "--no-incoming", "--json", "--socket", nodes[1].socket)
	var idle meshnodev1.ListAgentsResponse
	if code != 0 || protojson.Unmarshal([]byte(out), &idle) != nil {
		t.Fatalf("traffic --no-incoming: %d %s\n%s", code, errOut, out)
	}
	var idleIDs []string
	for _, a := range idle.GetAgents() {
		idleIDs = append(idleIDs, a.GetId())
	}
	if want := []string{"n1/planner", "n2/idle", "n3/auditor"}; !slices.Equal(idleIDs, want) {
		t.Errorf("agents with no incoming calls: %v, want %v", idleIDs, want)
	}
	out, errOut, code = runCLI(t, nil, "top", "--once", "--window", "1m", "--socket", nodes[0].socket)
	if code != 0 {
		t.Fatalf("top --once: %s", errOut)
	}
	for _, pair := range [][2]string{{"n1/planner", "n2/lookup"}, {"n1/planner", "n3/flaky"}, {"n3/auditor", "n1/slow"}} {
		if !strings.Contains(out, pair[0]+" ") || !lineWith(out, pair[0], pair[1]) {
			t.Errorf("top --once lacks the pair %s→%s:\n%s", pair[0], pair[1], out)
		}
	}
	if _, errOut, code := runCLI(t, nil, "traffic", "--agent", "nobody", "--socket", nodes[0].socket); code != 1 || !strings.Contains(errOut, `"nobody"`) {
		t.Errorf("traffic --agent nobody: exit %d, %q; want exit 1 naming the agent", code, errOut)
	}
	out, errOut, code = runCLI(t, nil, "stat", "agent", "flaky", "--json", "--socket", nodes[1].socket)
	var st struct {
		Name     string `json:"name"`
		Incoming struct {
			Requests       uint64  `json:"requests"`
			Errors         uint64  `json:"errors"`
			SuccessPercent float64 `json:"success_percent"`
		} `json:"incoming"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("stat agent flaky: %d %s\n%s", code, errOut, out)
	}
	if st.Name != "n3/flaky" || st.Incoming.Requests != uint64(risk.reached()) || st.Incoming.Errors != uint64(risk.agentFailed.Load()) {
		t.Errorf("stat agent flaky: %+v, want n3/flaky with %d calls, %d failed", st, risk.reached(), risk.agentFailed.Load())
	}
	for _, args := range [][]string{{"stat", "capability", "no.such"}, {"stat", "node", "n9"}, {"stat", "agent", "nobody"}} {
		if _, errOut, code := runCLI(t, nil, append(args, "--socket", nodes[0].socket)...); code != 1 || !strings.Contains(errOut, args[2]) {
			t.Errorf("meshnode %v: exit %d, %q; want exit 1 naming %s", args, code, errOut, args[2])
		}
	}
	summary(t, "n1/planner→n3/flaky error rate %.1f%% by PromQL over counters, %.1f%% over rate(), %.1f%% seen by the callers (%d calls)",
		errRate, 100*rateV, truth, risk.reached())
}

// lineWith reports whether one line of s holds every word.
func lineWith(s string, words ...string) bool {
	for _, line := range strings.Split(s, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}
