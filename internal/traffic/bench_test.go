package traffic

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

// BenchmarkEdgeMemory: the heap one tracked edge holds, measured over
// 10,000 edges (keys included), and the time a snapshot of them takes.
func BenchmarkEdgeMemory(b *testing.B) {
	const edges = 10000
	for range b.N {
		clk := clock.NewFake(time.Unix(1_700_000_000, 0))
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tb := NewTable(clk, edges)
		for i := range edges {
			tb.Record(Key{Caller: fmt.Sprintf("n1/caller-%05d", i), Callee: fmt.Sprintf("n2/callee-%05d", i), Capability: "inventory.lookup"}, true, time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/edges, "bytes/edge")
		start := time.Now()
		if n := len(tb.Snapshot()); n != edges {
			b.Fatalf("%d edges, want %d", n, edges)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "snapshot-ms/10k-edges")
		runtime.KeepAlive(tb)
	}
}

// BenchmarkRecord is the per-call cost of the matrix on a known edge.
func BenchmarkRecord(b *testing.B) {
	tb := NewTable(nil, 0)
	k := Key{Caller: "n1/a", Callee: "n2/b", Capability: "cap"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tb.Record(k, true, time.Millisecond)
		}
	})
}
