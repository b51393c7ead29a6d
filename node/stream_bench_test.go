package node_test

import (
	"context"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/benchutil"
)

// BenchmarkStreaming measures a streaming call from n1 to an agent on n2
// over real QUIC against a bare grpc-go server stream between this process
// and a child (the in-run baseline): chunks/s and MB/s for 1 KiB chunks,
// time to first chunk over a unary call's latency to the same node, and
// heap per open stream (both nodes, agent and caller are in this process,
// so it counts every leg).
func BenchmarkStreaming(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchStreaming(b)
	}
}

func benchStreaming(b *testing.B) {
	const chunks, size, rounds = 20000, 1024, 3
	nodes := startCluster(b)
	hold := make(chan struct{})
	b.Cleanup(func() { close(hold) })
	a := &agent.Agent{Name: "bench", Socket: nodes[1].socket, MaxInFlight: 1024}
	a.HandleStream(agent.Capability{Name: "bench.stream"}, func(ctx context.Context, r *agent.Request, send func([]byte) error) error {
		n, sz := benchutil.StreamParams(r.Payload)
		data := make([]byte, sz)
		for i := 0; i < n; i++ {
			if err := send(data); err != nil {
				return err
			}
		}
		return nil
	})
	a.HandleStream(agent.Capability{Name: "bench.hold"}, func(ctx context.Context, _ *agent.Request, send func([]byte) error) error {
		if err := send([]byte("open")); err != nil {
			return err
		}
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return nil
	})
	a.Handle(agent.Capability{Name: "bench.unary"}, func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: []byte("x")}, nil
	})
	runAgent(b, a)
	waitFor(b, 30*time.Second, "bench agent ready", func() bool { return len(readyAgents(nil, nodes[0], "bench.stream")) == 1 })
	client, err := agent.Dial(context.Background(), nodes[0].socket)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	meshRead := func(n int) (time.Duration, error) {
		start := time.Now()
		var first time.Duration
		s, err := client.CallStream(ctx, "bench.stream", benchutil.StreamPayload(n, size))
		if err != nil {
			return 0, err
		}
		defer s.Close()
		for got := 0; s.Next(); got++ {
			if got == 0 {
				first = time.Since(start)
			}
		}
		return first, s.Err()
	}
	dir, _ := os.MkdirTemp("", "mnbs")
	b.Cleanup(func() { os.RemoveAll(dir) })
	baseRead, _ := benchutil.StartStreamBaseline(b, dir)

	// Warm up both paths.
	if _, err := meshRead(2000); err != nil {
		b.Fatal(err)
	}
	if err := baseRead(ctx, 2000, size); err != nil {
		b.Fatal(err)
	}
	var meshTook, baseTook time.Duration
	for range rounds {
		start := time.Now()
		if _, err := meshRead(chunks); err != nil {
			b.Fatal(err)
		}
		meshTook += time.Since(start)
		start = time.Now()
		if err := baseRead(ctx, chunks, size); err != nil {
			b.Fatal(err)
		}
		baseTook += time.Since(start)
	}
	meshRate := float64(chunks*rounds) / meshTook.Seconds()
	baseRate := float64(chunks*rounds) / baseTook.Seconds()
	b.ReportMetric(meshRate, "mesh-chunks/s")
	b.ReportMetric(meshRate*size/1e6, "mesh-MB/s")
	b.ReportMetric(baseRate, "grpc-chunks/s")
	b.ReportMetric(meshRate/baseRate, "ratio-vs-grpc")

	// Time to first chunk against a unary call's latency, medians.
	var firsts, unary []time.Duration
	for range 200 {
		f, err := meshRead(1)
		if err != nil {
			b.Fatal(err)
		}
		firsts = append(firsts, f)
		start := time.Now()
		if _, err := client.Call(ctx, "bench.unary", nil); err != nil {
			b.Fatal(err)
		}
		unary = append(unary, time.Since(start))
	}
	slices.Sort(firsts)
	slices.Sort(unary)
	b.ReportMetric(float64(firsts[100].Microseconds()), "first-chunk-µs")
	b.ReportMetric(float64(unary[100].Microseconds()), "unary-µs")
	b.ReportMetric(float64(firsts[100])/float64(unary[100]), "first-chunk/unary")

	// Heap per open stream: streams that delivered one chunk and wait.
	const open = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var streams []*agent.Stream
	for range open {
		s, err := client.CallStream(ctx, "bench.hold", nil)
		if err != nil || !s.Next() {
			b.Fatalf("open stream: %v %v", err, s.Err())
		}
		streams = append(streams, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/open, "heap-B/open-stream")
	for _, s := range streams {
		s.Close()
	}
}
