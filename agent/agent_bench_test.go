package agent

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent/agenttest"
)

// BenchmarkCallRoundTrip measures a call through the SDK on both ends:
// Client.Call → node → Serve stream → handler goroutine → Respond → node →
// caller, against agenttest's in-memory node on a real Unix socket. The
// baseline, measured in the same run on the same socket and connection, is
// one plain grpc-go unary RPC (NodeService.Status). A round trip is two unary
// RPCs plus a stream message, so a ratio near 0.5 of the baseline's calls/s
// means the SDK adds little beyond the wire.
func BenchmarkCallRoundTrip(b *testing.B) {
	const callers = 16
	node := agenttest.NewNode(b)
	a := &Agent{Name: "bench", Socket: node.Socket, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	defer a.Close()
	a.Handle(Capability{Name: "echo"}, func(_ context.Context, r *Request) (*Response, error) {
		return &Response{Payload: r.Payload}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ctx) }()
	defer func() { cancel(); <-errc }()
	if err := a.Up(ctx); err != nil {
		b.Fatal(err)
	}
	c, err := Dial(ctx, node.Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 64)

	b.ResetTimer()
	sdk := measure(b, b.N, callers, func() error {
		_, err := c.Call(ctx, "echo", payload)
		return err
	})
	base := measure(b, b.N, callers, func() error {
		_, err := c.Status(ctx)
		return err
	})
	b.StopTimer()
	b.ReportMetric(sdk.p50us, "p50-us")
	b.ReportMetric(sdk.p99us, "p99-us")
	b.ReportMetric(sdk.rps, "req/s")
	b.ReportMetric(base.p50us, "baseline-p50-us")
	b.ReportMetric(base.p99us, "baseline-p99-us")
	b.ReportMetric(base.rps, "baseline-req/s")
	b.ReportMetric(sdk.rps/base.rps, "ratio")
}

type latencies struct{ p50us, p99us, rps float64 }

// measure runs n calls of f from `callers` goroutines and summarises them.
func measure(b *testing.B, n, callers int, f func() error) latencies {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				if err := f(); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return latencies{
		p50us: us(lat[n/2]),
		p99us: us(lat[min(n-1, n*99/100)]),
		rps:   float64(n) / elapsed.Seconds(),
	}
}
