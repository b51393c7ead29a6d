package metrics

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/dataplane"
	"google.golang.org/grpc/codes"
)

// BenchmarkScrape1000Agents: one node whose 1,000 agents (all within
// MaxAgents) each call one of 20 capabilities on 100 callees, with a mix
// of outcomes, then a full text scrape through the HTTP handler. Reported:
// the scrape's time and size.
func BenchmarkScrape1000Agents(b *testing.B) {
	r, err := New(Config{Node: "n1", MaxAgents: 2000})
	if err != nil {
		b.Fatal(err)
	}
	c := r.Calls()
	for i := range 1000 {
		e := dataplane.CallEvent{Caller: fmt.Sprintf("n1/agent-%04d", i), Callee: fmt.Sprintf("n2/callee-%03d", i%100),
			Capability: fmt.Sprintf("cap.%02d", i%20), Latency: time.Duration(i) * time.Millisecond, Attempts: 1}
		c.CallMade(e)
		e.Code = codes.Unavailable
		c.CallMade(e)
		c.CallServed(e)
	}
	h := r.Handler()
	var size int
	b.ResetTimer()
	for range b.N {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", Path, nil))
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size)/1024, "scrape-KiB")
}

// BenchmarkCallMade is the per-call cost the data plane pays for metrics,
// on a known pair (the hot path: cached series, no allocation).
func BenchmarkCallMade(b *testing.B) {
	r, _ := New(Config{Node: "n1"})
	c := r.Calls()
	e := dataplane.CallEvent{Caller: "n1/a", Callee: "n2/b", Capability: "cap", Latency: time.Millisecond, Attempts: 1}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.CallMade(e)
			c.CallServed(e)
		}
	})
}
