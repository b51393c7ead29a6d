package transport_test

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

func TestCancelAtRandomMoments(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	var parked atomic.Int32
	b.Handle("hold", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		parked.Add(1)
		defer parked.Add(-1)
		<-ctx.Done()
		return nil, nil
	})
	for i := range 100 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.Call(ctx, b.Addr().String(), "hold", nil); close(done) }()
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		cancel()
		<-done
		deadline := time.Now().Add(3 * time.Second)
		for parked.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("iteration %d: a handler never saw the cancellation", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// A request that reached the server after the caller gave up must not
	// leave a handler running either.
	time.Sleep(200 * time.Millisecond)
	if n := parked.Load(); n != 0 {
		t.Fatalf("%d handlers still parked after every caller cancelled", n)
	}
}
