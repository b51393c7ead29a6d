package traffic

import (
	"math"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

var t0 = time.Unix(1_700_000_000, 0)

func key(caller, callee string, side Side) Key {
	return Key{Caller: caller, Callee: callee, Capability: "cap", Side: side}
}

func only(t *testing.T, tb *Table) Edge {
	t.Helper()
	es := tb.Snapshot()
	if len(es) != 1 {
		t.Fatalf("%d edges, want 1: %+v", len(es), es)
	}
	return es[0]
}

// Calls leave each window as it rolls past them: after 15 s a burst is out
// of the 10 s window but still in 1 min and 10 min; after 11 min the edge
// is gone altogether.
func TestWindowsRollOff(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := NewTable(clk, 0)
	for i := 0; i < 100; i++ {
		tb.Record(key("a", "b", CallerSide), i%4 != 0, 3*time.Millisecond)
	}
	e := only(t, tb)
	for i, w := range e.Windows {
		if w.Requests != 100 || w.Errors != 25 {
			t.Fatalf("window %v: %d requests %d errors, want 100 and 25", Spans[i], w.Requests, w.Errors)
		}
	}
	if got := e.Windows[0].SuccessPercent(); got != 75 {
		t.Fatalf("success %v%%, want 75", got)
	}
	clk.Advance(15 * time.Second)
	e = only(t, tb)
	if e.Windows[0].Requests != 0 || e.Windows[1].Requests != 100 || e.Windows[2].Requests != 100 {
		t.Fatalf("after 15s: %d/%d/%d requests, want 0/100/100", e.Windows[0].Requests, e.Windows[1].Requests, e.Windows[2].Requests)
	}
	clk.Advance(2 * time.Minute)
	e = only(t, tb)
	if e.Windows[1].Requests != 0 || e.Windows[2].Requests != 100 {
		t.Fatalf("after 2m15s: 1m window %d, 10m window %d, want 0 and 100", e.Windows[1].Requests, e.Windows[2].Requests)
	}
	clk.Advance(9 * time.Minute)
	if es := tb.Snapshot(); len(es) != 0 || tb.Len() != 0 {
		t.Fatalf("after 11m: %d edges reported, %d kept, want none", len(es), tb.Len())
	}
}

// The rate divides by the time the window covers: a steady 20 calls/s
// reads as 20/s in every window once the windows are full, and also while
// the edge is younger than the window.
func TestRateOverCoveredTime(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := NewTable(clk, 0)
	for s := 0; s < 30; s++ {
		for i := 0; i < 20; i++ {
			tb.Record(key("a", "b", CallerSide), true, time.Millisecond)
			clk.Advance(50 * time.Millisecond)
		}
	}
	e := only(t, tb)
	for i := range e.Windows {
		if r := e.Windows[i].Rate(); math.Abs(r-20) > 2 {
			t.Errorf("window %v: %.2f calls/s, want about 20", Spans[i], r)
		}
	}
}

// Quantiles come from the buckets: 99 fast calls and one slow one put p50
// near the fast latency and p99 at or below the slow one's bucket bound.
func TestQuantiles(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := NewTable(clk, 0)
	for i := 0; i < 98; i++ {
		tb.Record(key("a", "b", CallerSide), true, 3*time.Millisecond)
	}
	tb.Record(key("a", "b", CallerSide), true, 700*time.Millisecond)
	tb.Record(key("a", "b", CallerSide), true, 700*time.Millisecond)
	w := only(t, tb).Windows[0]
	if p50 := w.Quantile(.5); p50 < 2*time.Millisecond || p50 > 4*time.Millisecond {
		t.Errorf("p50 %v, want within 3ms's bucket (2-4ms)", p50)
	}
	if p99 := w.Quantile(.99); p99 < 512*time.Millisecond || p99 > 1024*time.Millisecond {
		t.Errorf("p99 %v, want within 700ms's bucket (512ms-1.024s)", p99)
	}
	var empty Stats
	if empty.Quantile(.5) != 0 || empty.SuccessPercent() != 100 || empty.Rate() != 0 {
		t.Errorf("empty stats: %v %v %v", empty.Quantile(.5), empty.SuccessPercent(), empty.Rate())
	}
}

// A full table tracks no new edge, counts what it dropped, and makes room
// again once old edges have gone idle.
func TestTableBound(t *testing.T) {
	clk := clock.NewFake(t0)
	tb := NewTable(clk, 2)
	tb.Record(key("a", "b", CallerSide), true, time.Millisecond)
	tb.Record(key("a", "c", CallerSide), true, time.Millisecond)
	tb.Record(key("a", "d", CallerSide), true, time.Millisecond)
	if tb.Len() != 2 || tb.Dropped() != 1 {
		t.Fatalf("len %d dropped %d, want 2 and 1", tb.Len(), tb.Dropped())
	}
	clk.Advance(11 * time.Minute)
	tb.Record(key("a", "d", CallerSide), true, time.Millisecond)
	if tb.Len() != 1 || tb.Dropped() != 1 {
		t.Fatalf("after idle: len %d dropped %d, want 1 and 1", tb.Len(), tb.Dropped())
	}
}

func reported(node string, k Key, requests, errors uint64, bucket int) Reported {
	r := Reported{Edge: Edge{Key: k}, Nodes: []string{node}}
	for i := range r.Windows {
		r.Windows[i] = Stats{Span: Spans[i], Covered: Spans[i], Requests: requests, Errors: errors}
		r.Windows[i].Buckets[bucket] = requests
	}
	return r
}

// Merge counts each call once: the caller side wins over the callee side
// of the same pair, in either order; several caller-side reports of one
// pair add up; a pair seen only by its callee keeps the callee's figures.
func TestMerge(t *testing.T) {
	in := []Reported{
		reported("n2", key("n1/a", "n2/b", CalleeSide), 12, 6, 3), // retries make the callee see more
		reported("n1", key("n1/a", "n2/b", CallerSide), 10, 5, 5),
		reported("n3", key("", "n2/b", CallerSide), 4, 0, 1),
		reported("n1", key("", "n2/b", CallerSide), 6, 1, 2),
		reported("n2", key("n9/x", "n2/b", CalleeSide), 7, 7, 0),
		reported("n1", key("n1/a", "n3/c", CallerSide), 3, 0, 0),
		reported("n3", key("n1/a", "n3/c", CalleeSide), 3, 0, 0),
	}
	out := Merge(in)
	got := map[pair]Reported{}
	for _, r := range out {
		got[pair{r.Caller, r.Callee, r.Capability}] = r
	}
	if len(out) != 4 {
		t.Fatalf("%d merged edges, want 4: %+v", len(out), out)
	}
	ab := got[pair{"n1/a", "n2/b", "cap"}]
	if ab.Side != CallerSide || ab.Windows[0].Requests != 10 || ab.Windows[0].Errors != 5 || ab.Windows[0].SuccessPercent() != 50 {
		t.Errorf("n1/a→n2/b: %+v, want the caller side's 10 calls, 50%%", ab.Windows[0])
	}
	anon := got[pair{"", "n2/b", "cap"}]
	if anon.Windows[2].Requests != 10 || anon.Windows[2].Errors != 1 || len(anon.Nodes) != 2 || anon.Nodes[0] != "n1" {
		t.Errorf("anonymous→n2/b: %+v nodes %v, want 10 calls, 1 error, from n1 and n3", anon.Windows[2], anon.Nodes)
	}
	x := got[pair{"n9/x", "n2/b", "cap"}]
	if x.Side != CalleeSide || x.Windows[0].Requests != 7 {
		t.Errorf("n9/x→n2/b: %+v, want the callee side's 7", x)
	}
	if c := got[pair{"n1/a", "n3/c", "cap"}]; c.Windows[0].Requests != 3 || c.Side != CallerSide {
		t.Errorf("n1/a→n3/c: %+v, want 3 caller-side calls", c)
	}
}

// An edge survives the wire, and a malformed one from a peer is an error.
func TestProtoRoundTrip(t *testing.T) {
	r := reported("n1", key("n1/a", "n2/b", CallerSide), 10, 2, 4)
	back, err := FromProto(ToProto(&r))
	if err != nil {
		t.Fatal(err)
	}
	if back.Key != r.Key || back.Windows != r.Windows || back.Nodes[0] != "n1" {
		t.Fatalf("round trip: %+v, want %+v", back, r)
	}
	p := ToProto(&r)
	p.Windows = p.Windows[:2]
	if _, err := FromProto(p); err == nil {
		t.Error("an edge with two windows was accepted")
	}
	p = ToProto(&r)
	p.Windows[1].LatencyBuckets = p.Windows[1].LatencyBuckets[:3]
	if _, err := FromProto(p); err == nil {
		t.Error("an edge with three buckets was accepted")
	}
	p = ToProto(&r)
	p.Side = 0
	if _, err := FromProto(p); err == nil {
		t.Error("an edge without a side was accepted")
	}
}
