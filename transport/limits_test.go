package transport_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

func TestFrameLimitOnCalls(t *testing.T) {
	cfg := transport.Config{MaxFrameSize: 64 << 10}
	a := transporttest.NewEndpointConfig(t, "a", cfg)
	b := transporttest.NewEndpointConfig(t, "b", cfg)
	b.Handle("echo", echo)
	b.Handle("inflate", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		return make([]byte, 128<<10), nil
	})
	ctx := ctxT(t)
	if _, err := a.Call(ctx, b.Addr().String(), "echo", make([]byte, 128<<10)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized request: %v, want ResourceExhausted", err)
	}
	if _, err := a.Call(ctx, b.Addr().String(), "inflate", nil); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized response: %v, want ResourceExhausted", err)
	}
	if resp, err := a.Call(ctx, b.Addr().String(), "echo", make([]byte, 60<<10)); err != nil || len(resp) != 60<<10 {
		t.Fatalf("request under the limit: %d bytes, %v", len(resp), err)
	}
}

func TestStreamCancellationReachesHandler(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	started := make(chan struct{})
	ended := make(chan error, 1)
	b.HandleStream("watch", func(ctx context.Context, p transport.Peer, s *transport.Stream) error {
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return nil
	})
	ctx, cancel := context.WithCancel(ctxT(t))
	s, err := a.OpenStream(ctx, b.Addr().String(), "watch")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(wrapperspb.String("go")); err != nil { // make the stream visible to b
		t.Fatal(err)
	}
	<-started
	cancel()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("stream cancellation never reached the handler")
	}
	var m wrapperspb.StringValue
	if err := s.Recv(&m); status.Code(err) != codes.Canceled {
		t.Fatalf("recv after cancel: %v, want Canceled", err)
	}
}

// Surplus pooled streams must be finished on both sides, or their slots
// never return and calls block once MaxIncomingStreams is used up.
func TestStreamSlotsAreReleased(t *testing.T) {
	cfg := transport.Config{MaxIncomingStreams: 8, MaxIdleRPCStreams: 2}
	a := transporttest.NewEndpointConfig(t, "a", cfg)
	b := transporttest.NewEndpointConfig(t, "b", cfg)
	release := make(chan struct{}) // unbuffered: a send waits for a parked handler
	var parked atomic.Int32
	b.Handle("hold", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		parked.Add(1)
		defer parked.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	ctx := ctxT(t)
	for round := range 5 {
		errc := make(chan error, 8)
		for range 8 { // every slot; 6 of the 8 streams are surplus afterwards
			go func() {
				_, err := a.Call(ctx, b.Addr().String(), "hold", nil)
				errc <- err
			}()
		}
		for range 8 {
			release <- struct{}{}
		}
		for range 8 {
			if err := <-errc; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		// Calls cancelled mid-flight must free their slots too.
		cctx, cancel := context.WithCancel(ctx)
		errc2 := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := a.Call(cctx, b.Addr().String(), "hold", nil)
				errc2 <- err
			}()
		}
		waitFor(t, 10*time.Second, "3 handlers parked", func() bool { return parked.Load() == 3 })
		cancel()
		for range 3 {
			<-errc2
		}
		waitFor(t, 10*time.Second, "cancellation to reach all 3 handlers", func() bool { return parked.Load() == 0 })
	}
}
