package transport_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/transport"
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
