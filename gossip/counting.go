package gossip

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// countingTransport wraps the transport to count what gossip sends, for
// Stats (bytes/s per node is a benchmark figure).
type countingTransport struct {
	memberlist.NodeAwareTransport
	c        *counters
	log      *slog.Logger
	maxBlock time.Duration
	mu       sync.Mutex
	stuck    map[string]bool // addresses with a send still blocked
	streams  chan net.Conn
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func newCountingTransport(t memberlist.NodeAwareTransport, c *counters, log *slog.Logger, maxBlock time.Duration) *countingTransport {
	ct := &countingTransport{
		NodeAwareTransport: t, c: c, log: log, maxBlock: maxBlock, stuck: make(map[string]bool),
		streams: make(chan net.Conn), stop: make(chan struct{}),
	}
	ct.wg.Add(1)
	go ct.relayStreams()
	return ct
}

// relayStreams wraps inbound stream connections; it ends on Shutdown.
func (t *countingTransport) relayStreams() {
	defer t.wg.Done()
	in := t.NodeAwareTransport.StreamCh()
	for {
		select {
		case conn, ok := <-in:
			if !ok {
				return
			}
			select {
			case t.streams <- &countingConn{Conn: conn, c: t.c}:
			case <-t.stop:
				conn.Close()
				return
			}
		case <-t.stop:
			return
		}
	}
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet without ever stalling memberlist's probe or
// gossip loop for long, and without reporting errors. memberlist expects
// UDP semantics: a send returns at once and a lost packet shows up as a
// missing ack. A transport that dials on first use (QUIC) can block for a
// whole handshake timeout towards a dead peer, and memberlist abandons a
// probe whose ping returns an error that is not a *net.OpError, so the dead
// peer would never be suspected. Here a send runs in its own goroutine; after
// maxBlock the caller moves on, and further packets to that address are
// dropped until the stuck send finishes.
func (t *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	t.c.packetsSent.Add(1)
	t.c.packetBytesSent.Add(uint64(len(b)))
	t.mu.Lock()
	if t.stuck[addr.Addr] {
		t.mu.Unlock()
		t.c.packetsDropped.Add(1)
		return time.Now(), nil
	}
	t.mu.Unlock()
	type result struct {
		at  time.Time
		err error
	}
	done := make(chan result, 1)
	buf := append([]byte(nil), b...)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		at, err := t.NodeAwareTransport.WriteToAddress(buf, addr)
		done <- result{at, err}
		t.mu.Lock()
		delete(t.stuck, addr.Addr)
		t.mu.Unlock()
	}()
	timer := time.NewTimer(t.maxBlock)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			t.c.packetsDropped.Add(1)
			t.log.Debug("gossip packet not sent", "to", addr.String(), "err", r.err)
			return time.Now(), nil
		}
		return r.at, nil
	case <-timer.C:
		t.mu.Lock()
		t.stuck[addr.Addr] = true
		t.mu.Unlock()
		t.c.packetsDropped.Add(1)
		return time.Now(), nil
	}
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := t.NodeAwareTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: t.c}, nil
}

func (t *countingTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	conn, err := t.NodeAwareTransport.DialAddressTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: t.c}, nil
}

func (t *countingTransport) Shutdown() error {
	t.once.Do(func() { close(t.stop) })
	err := t.NodeAwareTransport.Shutdown()
	t.wg.Wait()
	return err
}

type countingConn struct {
	net.Conn
	c *counters
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.c.streamBytesRecv.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.c.streamBytesSent.Add(uint64(n))
	return n, err
}

// counters back Stats.
type counters struct {
	received, accepted, stale, undecodable, oversized, unknownKey, badSig atomic.Uint64
	departed, foreign, conflicts, badMeta, eventsDropped, broadcasts      atomic.Uint64
	packetsSent, packetBytesSent, streamBytesSent, streamBytesRecv        atomic.Uint64
	packetsDropped                                                        atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		MessagesReceived: c.received.Load(), MessagesAccepted: c.accepted.Load(),
		MessagesStale: c.stale.Load(), Undecodable: c.undecodable.Load(), Oversized: c.oversized.Load(),
		UnknownKey: c.unknownKey.Load(), BadSignature: c.badSig.Load(), DepartedNode: c.departed.Load(),
		ForeignAgent: c.foreign.Load(), NameConflicts: c.conflicts.Load(), BadMeta: c.badMeta.Load(),
		EventsDropped: c.eventsDropped.Load(), LoadBroadcasts: c.broadcasts.Load(),
		PacketsSent: c.packetsSent.Load(), PacketsDropped: c.packetsDropped.Load(), PacketBytesSent: c.packetBytesSent.Load(),
		StreamBytesSent: c.streamBytesSent.Load(), StreamBytesRecv: c.streamBytesRecv.Load(),
	}
}
