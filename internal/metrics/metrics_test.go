package metrics

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/routing"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
)

func newRegistry(t *testing.T, maxAgents int) *Registry {
	t.Helper()
	r, err := New(Config{Node: "n1", Version: "test", MaxAgents: maxAgents})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// scrape fetches /metrics through the real handler and parses it with
// Prometheus' own text parser.
func scrape(t *testing.T, r *Registry, accept string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.Handler()}
	go srv.Serve(ln)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+Path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if accept != "" {
		return nil, buf.Bytes()
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v\n%s", err, buf.String())
	}
	return fams, buf.Bytes()
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("%s has no series %v", name, labels)
	return 0
}

func call(caller, callee string, code codes.Code, attempts int) dataplane.CallEvent {
	return dataplane.CallEvent{Caller: caller, Callee: callee, Capability: "inventory.lookup", Code: code, Latency: 12 * time.Millisecond, Attempts: attempts}
}

// Calls land in their pair's series with their outcome code; the scrape
// parses with the text parser and passes promtool's lint rules.
func TestScrapeParsesAndLints(t *testing.T) {
	r := newRegistry(t, 0)
	c := r.Calls()
	for i := 0; i < 10; i++ {
		code := codes.OK
		if i%2 == 1 {
			code = codes.Internal
		}
		c.CallMade(call("n1/a", "n2/b", code, 1+i%3))
		c.CallServed(call("n1/a", "n1/c", code, 1))
	}
	c.Serving("n1/c", 1)
	c.Refused(dataplane.RefusedCycle)
	c.BreakerChanged("n2/b", "inventory.lookup", routing.BreakerClosed, routing.BreakerOpen)
	c.RetryBudgetExhausted("inventory.lookup")
	c.Decided(routing.Latency, true)
	c.Decided(routing.Latency, false)
	c.Decided(routing.Latency, true)
	r.RetryBudgets(func() map[string]float64 { return map[string]float64{"inventory.lookup": 7.5} })
	r.GaugeFunc("meshnode_quic_connections", "Live QUIC connections to peer nodes.", func() float64 { return 3 })

	fams, raw := scrape(t, r, "")
	pair := map[string]string{"caller_agent": "n1/a", "callee_agent": "n2/b", "capability": "inventory.lookup"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"meshnode_calls_total", with(pair, "code", "OK"), 5},
		{"meshnode_calls_total", with(pair, "code", "Internal"), 5},
		{"meshnode_call_duration_seconds", pair, 10},
		{"meshnode_call_attempts_total", map[string]string{"capability": "inventory.lookup"}, 19},
		{"meshnode_call_retries_total", map[string]string{"capability": "inventory.lookup"}, 9},
		{"meshnode_handled_calls_total", map[string]string{"callee_agent": "n1/c", "code": "Internal"}, 5},
		{"meshnode_handler_duration_seconds", map[string]string{"callee_agent": "n1/c"}, 10},
		{"meshnode_agent_calls_in_flight", map[string]string{"agent": "n1/c"}, 1},
		{"meshnode_routing_refusals_total", map[string]string{"reason": "cycle"}, 1},
		{"meshnode_routing_refusals_total", map[string]string{"reason": "hop_limit"}, 0},
		{"meshnode_routing_breaker_state", map[string]string{"agent": "n2/b"}, 1},
		{"meshnode_routing_breaker_transitions_total", map[string]string{"agent": "n2/b", "state": "open"}, 1},
		{"meshnode_routing_retry_budget_exhausted_total", nil, 1},
		{"meshnode_quic_connections", nil, 3},
		{"meshnode_routing_retry_budget_left", map[string]string{"capability": "inventory.lookup"}, 7.5},
		{"meshnode_routing_decisions_total", map[string]string{"policy": "latency", "result": "picked"}, 2},
		{"meshnode_routing_decisions_total", map[string]string{"policy": "latency", "result": "no_agent"}, 1},
		{"meshnode_node_info", map[string]string{"node": "n1", "version": "test"}, 1},
	}
	for _, tc := range checks {
		if got := value(t, fams, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	problems, err := promlint.New(bytes.NewReader(raw)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "meshnode_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// OpenMetrics is served when asked for, ending with its EOF marker; the
// protobuf format carries the native histogram's schema.
func TestFormats(t *testing.T) {
	r := newRegistry(t, 0)
	r.Calls().CallMade(call("n1/a", "n2/b", codes.OK, 1))
	_, om := scrape(t, r, "application/openmetrics-text;version=1.0.0")
	if !bytes.HasSuffix(om, []byte("# EOF\n")) || !bytes.Contains(om, []byte("meshnode_calls_total{")) {
		t.Errorf("OpenMetrics scrape lacks the EOF marker or the call series:\n%.400s", om)
	}
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mfs {
		if f.GetName() == "meshnode_call_duration_seconds" {
			h := f.GetMetric()[0].GetHistogram()
			if len(h.GetBucket()) == 0 || h.GetSchema() == 0 && len(h.GetPositiveSpan()) == 0 {
				t.Errorf("histogram lacks classic buckets or native spans: %v", h)
			}
			return
		}
	}
	t.Error("no meshnode_call_duration_seconds family")
}

// Past MaxAgents distinct agents, new ones are folded under "other" and
// counted once each; the admitted keep their own series.
func TestAgentsFoldUnderOther(t *testing.T) {
	r := newRegistry(t, 3)
	c := r.Calls()
	for i := 0; i < 10; i++ {
		c.CallMade(call(fmt.Sprintf("n1/a%d", i), "n1/b", codes.OK, 1))
		c.CallMade(call(fmt.Sprintf("n1/a%d", i), "n1/b", codes.OK, 1)) // a second call folds nothing new
	}
	fams, _ := scrape(t, r, "")
	if got := value(t, fams, "meshnode_calls_total", map[string]string{"caller_agent": "n1/a0"}); got != 2 {
		t.Errorf("admitted agent n1/a0: %v calls, want 2", got)
	}
	// n1/b, n1/a0 and n1/a1 are admitted; a2..a9 fold: 8 agents, 16 calls.
	if got := value(t, fams, "meshnode_calls_total", map[string]string{"caller_agent": Other}); got != 16 {
		t.Errorf("folded calls %v, want 16", got)
	}
	if got := value(t, fams, "meshnode_metrics_folded_total", map[string]string{"label": "agent"}); got != 8 {
		t.Errorf("folded agents %v, want 8", got)
	}
	n := 0
	for _, m := range fams["meshnode_calls_total"].GetMetric() {
		_ = m
		n++
	}
	if n != 3 {
		t.Errorf("%d call series, want 3 (a0, a1, other)", n)
	}
}

// The hot path allocates nothing once a pair's series are resolved.
func TestCallPathDoesNotAllocate(t *testing.T) {
	c := newRegistry(t, 0).Calls()
	e := call("n1/a", "n2/b", codes.OK, 2)
	c.CallMade(e)
	c.CallServed(e)
	c.Serving("n2/b", 1)
	if n := testing.AllocsPerRun(200, func() {
		c.CallMade(e)
		c.CallServed(e)
		c.Serving("n2/b", 1)
		c.Serving("n2/b", -1)
		c.Decided(routing.Latency, true)
	}); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

// An explicit address that cannot be bound is an error naming the flag;
// the listener, once up, serves /metrics and Close cuts it at once.
func TestListen(t *testing.T) {
	r := newRegistry(t, 0)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, _, err := Listen(held.Addr().String(), false, r.Handler()); err == nil || !strings.Contains(err.Error(), "--metrics-bind") {
		t.Fatalf("binding a held port: %v, want an error naming --metrics-bind", err)
	}
	s, notice, err := Listen("127.0.0.1:0", true, r.Handler())
	if err != nil || notice != "" {
		t.Fatalf("Listen: %v %q", err, notice)
	}
	resp, err := http.Get("http://" + s.Addr().String() + Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s.Close()
	if _, err := http.Get("http://" + s.Addr().String() + Path); err == nil {
		t.Fatal("still serving after Close")
	}
}
