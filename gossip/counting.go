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
	c       *counters
	log     *slog.Logger
	mu      sync.Mutex
	senders map[string]*sender // per destination address
	streams chan net.Conn
	stop    chan struct{}
	// innerDone is closed once the wrapped transport's Shutdown returned.
	innerDone chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func newCountingTransport(t memberlist.NodeAwareTransport, c *counters, log *slog.Logger) *countingTransport {
	ct := &countingTransport{
		NodeAwareTransport: t, c: c, log: log, senders: make(map[string]*sender),
		streams: make(chan net.Conn), stop: make(chan struct{}), innerDone: make(chan struct{}),
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
				t.drain(in)
				return
			}
		case <-t.stop:
			t.drain(in)
			return
		}
	}
}

// drain refuses inbound streams until the inner transport has shut down:
// some transports (memberlist's NetTransport) wait in Shutdown until their
// listener has handed over its last connection.
func (t *countingTransport) drain(in <-chan net.Conn) {
	for {
		select {
		case conn, ok := <-in:
			if !ok {
				return
			}
			conn.Close()
		case <-t.innerDone:
			return
		}
	}
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress queues a packet for its destination's sender and returns
// at once. memberlist expects UDP semantics: a send never stalls its probe
// or gossip loop, and a lost packet shows up as a missing ack. A transport
// that dials on first use (QUIC) can block for a whole handshake towards a
// dead peer, and memberlist abandons a probe whose ping returns an error
// that is not a *net.OpError, so that peer would never be suspected. Each
// destination has one sender goroutine and a bounded queue; when the queue
// is full (the destination is stuck) packets are dropped, as UDP would.
func (t *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	t.c.packetsSent.Add(1)
	t.c.packetBytesSent.Add(uint64(len(b)))
	buf := append([]byte(nil), b...) // memberlist may reuse b
	t.mu.Lock()
	s := t.senders[addr.Addr]
	if s == nil {
		select {
		case <-t.stop:
			t.mu.Unlock()
			return time.Now(), nil
		default:
		}
		s = &sender{q: make(chan []byte, senderQueue)}
		t.senders[addr.Addr] = s
		t.wg.Add(1)
		go t.send(addr, s)
	}
	select {
	case s.q <- buf:
	default:
		t.c.packetsDropped.Add(1)
	}
	t.mu.Unlock()
	return time.Now(), nil
}

// senderQueue bounds the packets waiting for one destination.
const senderQueue = 64

// senderIdle is how long a sender without packets lives on.
const senderIdle = 30 * time.Second

type sender struct{ q chan []byte }

// send delivers one destination's packets in order; it ends after
// senderIdle without packets or on Shutdown.
func (t *countingTransport) send(addr memberlist.Address, s *sender) {
	defer t.wg.Done()
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	for {
		select {
		case b := <-s.q:
			if _, err := t.NodeAwareTransport.WriteToAddress(b, addr); err != nil {
				t.c.packetsDropped.Add(1)
				t.log.Debug("gossip packet not sent", "to", addr.String(), "err", err)
			}
			idle.Reset(senderIdle)
		case <-idle.C:
			t.mu.Lock()
			if len(s.q) > 0 { // a packet raced in: keep going
				t.mu.Unlock()
				idle.Reset(senderIdle)
				continue
			}
			delete(t.senders, addr.Addr)
			t.mu.Unlock()
			return
		case <-t.stop:
			return
		}
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
	var err error
	t.once.Do(func() {
		close(t.stop)
		err = t.NodeAwareTransport.Shutdown()
		close(t.innerDone)
		t.wg.Wait()
	})
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
