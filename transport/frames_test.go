package transport_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

// heapLimit is how much the live heap may grow while peers announce large
// frames they never send.
const heapLimit = 16 << 20

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// watchHeap samples the live heap until done holds or d passes and returns
// the largest growth over base seen. It fails the test as soon as the
// growth passes heapLimit.
func watchHeap(t *testing.T, base uint64, d time.Duration, done func() bool) uint64 {
	t.Helper()
	var peak uint64
	deadline := time.Now().Add(d)
	for {
		if h := liveHeap(); h > base && h-base > peak {
			peak = h - base
		}
		if peak > heapLimit {
			t.Fatalf("live heap grew by %d MiB, limit %d MiB", peak>>20, heapLimit>>20)
		}
		if done() || time.Now().After(deadline) {
			return peak
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openStalled opens n streams on conn, each sending the channel tag and a
// frame header announcing size and nothing more. It returns a counter of
// streams the server has since reset, read in the background.
func openStalled(t *testing.T, conn *quic.Conn, n int, ch transport.Channel, size func(i int) uint32) *atomic.Int32 {
	t.Helper()
	var reset atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatalf("opening stream %d: %v", i, err)
		}
		if _, err := s.Write(append([]byte{byte(ch)}, frame(size(i), nil)...)); err != nil {
			t.Fatalf("writing stream %d: %v", i, err)
		}
		go func() {
			s.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := s.Read(make([]byte, 1))
			var se *quic.StreamError
			if errors.As(err, &se) && se.Remote {
				reset.Add(1)
			}
		}()
	}
	return &reset
}

// Authenticated streams get the same treatment as join streams: announcing
// MaxFrameSize on 64 streams and sending nothing must not make the server
// allocate 64 × MaxFrameSize.
func TestAuthenticatedStallingStreamsDoNotAllocate(t *testing.T) {
	srv := newServerConfig(t, transport.Config{FrameReadTimeout: time.Second}, nil)
	conn, err := rawConn(t, srv.ep.Addr().String(), transport.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	base := liveHeap()
	reset := openStalled(t, conn, n, transport.ChannelRPC, func(int) uint32 { return 4 << 20 })
	peak := watchHeap(t, base, 10*time.Second, func() bool { return reset.Load() == n })
	t.Logf("%d streams announcing 4 MiB: live heap grew by at most %d KiB", n, peak>>10)
	if got := reset.Load(); got != n {
		t.Fatalf("%d of %d stalled streams reset after FrameReadTimeout", got, n)
	}
	srv.assertServes(t)
}

// The acceptance test of the join limits: 64 unauthenticated join streams,
// each announcing the largest frame a node may send or the largest a joiner
// may, trickle nothing more, round after round. The live heap must stay
// within heapLimit, goroutines must stay bounded and return, and an
// authenticated peer's calls must keep succeeding throughout.
func TestJoinFloodBoundsMemoryAndSparesPeers(t *testing.T) {
	const conns, streamsPer, rounds = 16, 4, 3
	srv := newJoinServer(t, transport.Config{
		MaxJoinConnsPerIP: conns, // all from 127.0.0.1: let every stream in
		JoinIdleTimeout:   time.Second,
	}, nil)
	addr := srv.Addr().String()

	good := transporttest.NewEndpoint(t, "good")
	stop := make(chan struct{})
	calls := make(chan error, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				if n == 0 {
					calls <- errors.New("no call completed")
				}
				calls <- nil
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := good.Call(ctx, addr, "probe", nil)
			cancel()
			if err != nil {
				calls <- err
				return
			}
			n++
			time.Sleep(10 * time.Millisecond)
		}
	}()

	goroutines := runtime.NumGoroutine()
	base := liveHeap()
	var peakHeap uint64
	peakG := 0
	for round := range rounds {
		var reset []*atomic.Int32
		var open []*quic.Conn
		for range conns {
			var conn *quic.Conn
			// The last round's connections free their slots as the server
			// sees them close.
			waitFor(t, 5*time.Second, "a join connection", func() bool {
				c, err := rawJoinConn(t, addr, "127.0.0.1")
				conn = c
				return err == nil
			})
			open = append(open, conn)
			reset = append(reset, openStalled(t, conn, streamsPer, transport.ChannelRPC, func(i int) uint32 {
				if i%2 == 0 {
					return 4 << 20 // a node's cap: must be refused outright
				}
				return 16 << 10 // a joiner's cap: read only as it arrives
			}))
		}
		all := func() bool {
			if g := runtime.NumGoroutine(); g > peakG {
				peakG = g
			}
			for _, r := range reset {
				if r.Load() != streamsPer {
					return false
				}
			}
			return true
		}
		peakHeap = max(peakHeap, watchHeap(t, base, 10*time.Second, all))
		if !all() {
			t.Fatalf("round %d: not every flooding stream was reset", round)
		}
		for _, c := range open {
			c.CloseWithError(0, "next round")
		}
	}
	close(stop)
	if err := <-calls; err != nil {
		t.Fatalf("authenticated peer's call failed during the flood: %v", err)
	}
	// Per flooding stream: our reader goroutine here and the server's
	// stream goroutine; per connection, quic-go's loops on both sides (the
	// attacker's own transport among them) and our stream acceptor.
	if bound := goroutines + 2*conns*streamsPer + 6*conns + 32; peakG > bound {
		t.Fatalf("%d goroutines at the peak, bound %d", peakG, bound)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("goroutines to return to their level before the flood (%d)", goroutines), func() bool {
		return runtime.NumGoroutine() <= goroutines+16
	})
	t.Logf("%d rounds of %d join streams: live heap grew by at most %d KiB; goroutines %d before, %d at the peak, %d after; refusals %+v",
		rounds, conns*streamsPer, peakHeap>>10, goroutines, peakG, runtime.NumGoroutine(), srv.Refusals())
}
