package node_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/internal/metrics"
	"github.com/agentmesh/meshnode/node"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scrapeSocket fetches /metrics from a node's socket, as
// `curl --unix-socket SOCK http://localhost/metrics` does, and parses it.
func scrapeSocket(t *testing.T, tn *testNode) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", tn.socket)
	}}}
	resp, err := c.Get("http://localhost/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s's /metrics does not parse: %v", tn.name, err)
	}
	return fams
}

func counter(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	var sum float64
next:
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// An agent on n2 fails every other call from an agent on n1. The caller's
// node counts the calls by pair and outcome, the callee's node counts what
// its agent handled, both on their sockets' /metrics; the traffic matrix
// asked on n3 (which saw none of it) merges n1's and n2's answers into one
// edge with every call counted once.
func TestMetricsAndTrafficAcrossNodes(t *testing.T) {
	nodes := startCluster(t)
	var n atomic.Int64
	serveAgent(t, nodes[1], "b", map[string]agent.HandlerFunc{"lookup": func(context.Context, *agent.Request) (*agent.Response, error) {
		if n.Add(1)%2 == 0 {
			return nil, agent.Errorf(codes.Internal, "every other call fails")
		}
		return &agent.Response{Payload: []byte("ok")}, nil
	}})
	serveAgent(t, nodes[0], "a", map[string]agent.HandlerFunc{"noop": echoFrom("n1")})
	waitFor(t, 20*time.Second, "n1 sees n2/b ready", func() bool { return readyAgents(t, nodes[0], "lookup")["n2/b"] })
	waitFor(t, 20*time.Second, "n1 sees n1/a ready", func() bool { return readyAgents(t, nodes[0], "noop")["n1/a"] })

	inv := meshnodev1.NewInvokeServiceClient(nodes[0].conn(t))
	// The router may stop sending to an agent that fails this often (its
	// quality floor): count what actually happened, by outcome.
	var ok, agentFailed float64
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: "lookup", CallerAgentId: "a"})
		cancel()
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.Internal:
			agentFailed++
		}
	}
	if ok < 5 || agentFailed < 5 {
		t.Fatalf("%v calls succeeded and %v failed in the agent, want at least 5 of each", ok, agentFailed)
	}
	pair := func(code string) map[string]string {
		return map[string]string{"caller_agent": "n1/a", "callee_agent": "n2/b", "capability": "lookup", "code": code}
	}
	m1, m2 := scrapeSocket(t, nodes[0]), scrapeSocket(t, nodes[1])
	for _, c := range []struct {
		node       string
		fams       map[string]*dto.MetricFamily
		name, code string
		want       float64
	}{
		{"n1", m1, "meshnode_calls_total", "OK", ok}, {"n1", m1, "meshnode_calls_total", "Internal", agentFailed},
		{"n2", m2, "meshnode_handled_calls_total", "OK", ok}, {"n2", m2, "meshnode_handled_calls_total", "Internal", agentFailed},
	} {
		if got := counter(c.fams, c.name, pair(c.code)); got != c.want {
			t.Errorf("%s %s{code=%s} = %v, want %v", c.node, c.name, c.code, got, c.want)
		}
	}
	if got := counter(m2, "meshnode_calls_total", nil); got != 0 {
		t.Errorf("n2 counts %v calls made, want 0 (it made none)", got)
	}
	// Raft and memberlist reach the registry through the go-metrics bridge.
	bridged := map[string]bool{}
	for name := range m1 {
		if p, _, ok := strings.Cut(name, "_"); ok && (p == "raft" || p == "memberlist") {
			bridged[p] = true
		}
	}
	if !bridged["raft"] || !bridged["memberlist"] {
		t.Errorf("n1's scrape has raft series: %v, memberlist series: %v; want both from the go-metrics bridge", bridged["raft"], bridged["memberlist"])
	}
	if m1["meshnode_quic_connections"] == nil || m1["meshnode_pki_certificate_expiry_seconds"].GetMetric()[0].GetGauge().GetValue() <= 0 {
		t.Errorf("n1 lacks the QUIC gauge or a positive certificate expiry")
	}

	tc := meshnodev1.NewTrafficServiceClient(nodes[2].conn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := tc.Traffic(ctx, &meshnodev1.TrafficRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetNodes()) != 3 || len(resp.GetUnreachableNodes()) != 0 {
		t.Fatalf("answered by %v, unreachable %v; want all three nodes", resp.GetNodes(), resp.GetUnreachableNodes())
	}
	var edge *meshnodev1.TrafficEdge
	for _, e := range resp.GetEdges() {
		if e.GetCallerAgent() == "n1/a" && e.GetCalleeAgent() == "n2/b" && e.GetCapability() == "lookup" {
			edge = e
		}
	}
	if edge == nil {
		t.Fatalf("no n1/a→n2/b edge in %v", resp.GetEdges())
	}
	w := edge.GetWindows()[1]
	if edge.GetSide() != meshnodev1.TrafficSide_TRAFFIC_SIDE_CALLER || float64(w.GetRequests()) != ok+agentFailed || float64(w.GetErrors()) != agentFailed {
		t.Errorf("edge %v: side %v, 1m window %d requests %d errors; want the caller side's %v and %v", edge.GetNodes(), edge.GetSide(), w.GetRequests(), w.GetErrors(), ok+agentFailed, agentFailed)
	}
	local, err := tc.Traffic(ctx, &meshnodev1.TrafficRequest{Local: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(local.GetEdges()) != 0 || len(local.GetNodes()) != 1 {
		t.Errorf("n3 alone: %d edges from %v, want none from n3 only", len(local.GetEdges()), local.GetNodes())
	}
}

// documentedMetrics lists the meshnode_ metric names docs/observability.md
// and the Grafana dashboard use.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`meshnode_[a-z0-9_]+`)
	for _, f := range []string{"../docs/observability.md", "../docs/grafana-dashboard.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range re.FindAllString(string(b), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				n = strings.TrimSuffix(n, suffix)
			}
			names[n] = true
		}
	}
	return names
}

// Every metric the docs and the dashboard name exists: in a real node's
// scrape, or (for series that appear only on an event: a breaker trip, a
// spent budget, a folded agent) in a registry that saw every event.
func TestDocumentedMetricsExist(t *testing.T) {
	nodes := startCluster(t)
	have := map[string]bool{}
	for _, n := range nodes {
		for name := range scrapeSocket(t, n) {
			have[name] = true
		}
	}
	reg, err := metrics.New(metrics.Config{Node: "x", MaxAgents: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := reg.Calls()
	c.CallMade(dataplane.CallEvent{Caller: "x/a", Callee: "x/b", Capability: "c", Attempts: 2})
	c.CallServed(dataplane.CallEvent{Caller: "x/a", Callee: "x/b", Capability: "c"})
	c.Serving("x/b", 1)
	c.BreakerChanged("x/b", "c", routing.BreakerClosed, routing.BreakerOpen)
	c.RetryBudgetExhausted("c")
	c.Decided(routing.Latency, true)
	reg.RetryBudgets(func() map[string]float64 { return map[string]float64{"c": 1} })
	reg.Quorum().Decided("payment.approve", "decided", "approve", time.Second, 1)
	reg.Quorum().Refused("below_policy")
	fams, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		have[f.GetName()] = true
	}
	for name := range documentedMetrics(t) {
		if !have[name] {
			t.Errorf("the docs name %s, which no node exports", name)
		}
	}
}

// Scrapes that keep coming while the node stops, on the listener and on
// the socket, neither hold up the stop nor break it (the gauges read
// components that are stopping).
func TestScrapesDuringStop(t *testing.T) {
	root, err := os.MkdirTemp("", "mns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	cfg := node.DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.Bind = "s1", filepath.Join(root, "s1"), "127.0.0.1:"+strconv.Itoa(freePort(t))
	cfg.MetricsBind, cfg.MetricsBindChosen = "127.0.0.1:0", true
	tn, err := node.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer scancel()
	if err := tn.Start(sctx); err != nil {
		t.Fatal(err)
	}
	addr := tn.MetricsAddr()
	if addr == nil {
		t.Fatal("a node with --metrics-bind 127.0.0.1:0 has no metrics listener")
	}
	stop := make(chan struct{})
	var scrapes atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := &http.Client{Timeout: 2 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if resp, err := c.Get("http://" + addr.String() + "/metrics"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					scrapes.Add(1)
				}
			}
		})
	}
	waitFor(t, 10*time.Second, "scrapes under way", func() bool { return scrapes.Load() > 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = tn.Stop(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("stop with scrapes in flight: %v", err)
	}
}
