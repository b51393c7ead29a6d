package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/quic-go/quic-go"
)

// gossipTransport is the memberlist.NodeAwareTransport on the endpoint.
// Packets travel as QUIC datagrams (unreliable, like UDP) and, when larger
// than a datagram may be, as a one-frame stream. Stream connections are QUIC
// streams tagged ChannelGossip.
type gossipTransport struct {
	e        *Endpoint
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	shutOnce sync.Once
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

// Memberlist returns a memberlist transport on this endpoint and makes it
// the receiver of gossip traffic. Its Shutdown stops delivery but leaves
// the endpoint running. Only one is active at a time: a later call
// replaces the earlier one.
func (e *Endpoint) Memberlist() memberlist.NodeAwareTransport {
	t := &gossipTransport{
		e:        e,
		packetCh: make(chan *memberlist.Packet, 256),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
	}
	if old := e.gossip.Swap(t); old != nil {
		old.Shutdown()
	}
	return t
}

// FinalAdvertiseAddr returns ip:port if given, else the endpoint's
// advertised address (which must be an IP: memberlist gossips IPs).
func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return nil, 0, fmt.Errorf("memberlist advertise address %q is not an IP", ip)
		}
		if port == 0 {
			port = t.e.advertisePort()
		}
		return parsed, port, nil
	}
	ua, ok := t.e.advertise.(*net.UDPAddr)
	if !ok || ua.IP == nil || ua.IP.IsUnspecified() {
		return nil, 0, fmt.Errorf("endpoint address %s is not advertisable: set transport AdvertiseAddr", t.e.advertise)
	}
	return ua.IP, ua.Port, nil
}

func (e *Endpoint) advertisePort() int {
	_, p, _ := net.SplitHostPort(e.advertise.String())
	n, _ := strconv.Atoi(p)
	return n
}

// WriteTo sends one packet to addr (UDP host:port). Like UDP it never
// waits for a handshake: without a connection the packet waits for a
// background dial (which all senders to that address share) and is
// dropped if the dial fails. Memberlist's probe and gossip loops therefore
// never stall on a slow or dead peer.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if pc := t.e.pool.lookup(addr); pc != nil {
		if err := t.send(pc, b); err != nil {
			return time.Time{}, fmt.Errorf("sending gossip packet to %s: %w", addr, err)
		}
		return t.e.cfg.Clock.Now(), nil
	}
	select {
	case t.e.pendingPackets <- struct{}{}:
	default:
		return time.Time{}, fmt.Errorf("sending gossip packet to %s: too many packets waiting for connections", addr)
	}
	b = append([]byte(nil), b...)
	started := t.e.pool.goIfOpen(func() {
		defer func() { <-t.e.pendingPackets }()
		ctx, cancel := context.WithTimeout(t.e.ctx, t.e.cfg.HandshakeTimeout)
		defer cancel()
		pc, err := t.e.pool.get(ctx, addr)
		if err == nil {
			err = t.send(pc, b)
		}
		if err != nil {
			t.e.log.Debug("gossip packet dropped", "addr", addr, "err", err)
		}
	})
	if !started {
		<-t.e.pendingPackets
		return time.Time{}, ErrClosed
	}
	return t.e.cfg.Clock.Now(), nil
}

func (t *gossipTransport) send(pc *peerConn, b []byte) error {
	err := pc.conn.SendDatagram(b)
	var tooLarge *quic.DatagramTooLargeError
	if errors.As(err, &tooLarge) {
		err = t.writePacketStream(pc, b)
	}
	return err
}

// writePacketStream sends a packet as one frame on its own stream. It does
// not wait for stream credit: packets are best-effort.
func (t *gossipTransport) writePacketStream(pc *peerConn, b []byte) error {
	if len(b)+frameHeaderLen+1 > t.e.cfg.MaxFrameSize {
		return fmt.Errorf("%w: gossip packet of %d bytes", ErrFrameTooLarge, len(b))
	}
	s, err := pc.conn.OpenStream()
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 1+frameHeaderLen+len(b))
	buf = append(buf, byte(ChannelPacket))
	buf = appendFrameHeader(buf, len(b))
	if _, err := s.Write(append(buf, b...)); err != nil {
		resetStream(s, CodeCanceled)
		return err
	}
	return s.Close() // the receiver closes its side after reading: slot freed
}

func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.e.ctx, timeout)
	defer cancel()
	return t.e.dialChannel(ctx, addr, ChannelGossip, nil)
}

func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown stops delivering gossip to this transport. It never closes the
// endpoint, which Raft and RPC share.
func (t *gossipTransport) Shutdown() error {
	t.shutOnce.Do(func() {
		close(t.done)
		t.e.gossip.CompareAndSwap(t, nil)
	})
	return nil
}

// deliverPacket hands a received packet to memberlist, stamped on receipt
// for its RTT measurements. It waits while memberlist is busy (backpressure
// on that one connection), and drops packets when no memberlist runs.
func (e *Endpoint) deliverPacket(b []byte, from net.Addr) {
	t := e.gossip.Load()
	if t == nil {
		return
	}
	p := &memberlist.Packet{Buf: b, From: from, Timestamp: e.cfg.Clock.Now()}
	select {
	case t.packetCh <- p:
	case <-t.done:
	case <-e.ctx.Done():
	}
}

func (e *Endpoint) deliverGossipStream(pc *peerConn, s *quic.Stream) {
	t := e.gossip.Load()
	if t == nil {
		e.refuseStream(pc, s, CodeRefused, "memberlist not running", nil)
		return
	}
	c := newStreamConn(s, e.advertise, pc.peer)
	select {
	case t.streamCh <- c:
	case <-t.done:
		resetStream(s, CodeRefused)
	case <-e.ctx.Done():
		resetStream(s, CodeRefused)
	}
}
