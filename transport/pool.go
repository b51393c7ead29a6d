package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// ErrPeerUnavailable is returned when no connection to a peer address could
// be established (dial failed, or the address is in reconnect backoff).
var ErrPeerUnavailable = errors.New("peer unavailable")

// peerConn is one authenticated QUIC connection and the client-side pool of
// idle RPC streams on it.
type peerConn struct {
	conn *quic.Conn
	peer Peer
	join bool

	idleMu sync.Mutex
	idle   []*quic.Stream
}

func newPeerConn(conn *quic.Conn, peer Peer, join bool) *peerConn {
	return &peerConn{conn: conn, peer: peer, join: join}
}

func (pc *peerConn) alive() bool { return pc.conn.Context().Err() == nil }

// connPool keeps at most one live connection per remote address. Dialed and
// accepted connections both land here: a peer that dialed us is reused for
// our calls to it, since every node sends from its one listening socket.
type connPool struct {
	e       *Endpoint
	mu      sync.Mutex
	conns   map[string]*peerConn // by canonical remote address
	dials   map[string]*dialCall
	backoff map[string]*backoffState
}

type dialCall struct {
	done chan struct{}
	pc   *peerConn
	err  error
}

type backoffState struct {
	next  time.Time
	delay time.Duration
	err   error
}

func (p *connPool) init(e *Endpoint) {
	p.e = e
	p.conns = map[string]*peerConn{}
	p.dials = map[string]*dialCall{}
	p.backoff = map[string]*backoffState{}
}

// adopt registers an accepted connection unless a live one to that address
// exists already (two nodes dialing each other at once keep both; calls use
// whichever got registered first).
func (p *connPool) adopt(pc *peerConn) {
	key := pc.conn.RemoteAddr().String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.conns[key]; ok && old.alive() {
		return
	}
	p.conns[key] = pc
	delete(p.backoff, key)
}

func (p *connPool) forget(pc *peerConn) {
	key := pc.conn.RemoteAddr().String()
	p.mu.Lock()
	if p.conns[key] == pc {
		delete(p.conns, key)
	}
	p.mu.Unlock()
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	conns := make([]*peerConn, 0, len(p.conns))
	for _, pc := range p.conns {
		conns = append(conns, pc)
	}
	p.mu.Unlock()
	for _, pc := range conns {
		pc.conn.CloseWithError(ConnCodeShutdown, "endpoint shutting down")
	}
}

// get returns a live connection to addr, dialing once for all concurrent
// callers. ctx bounds only this caller's wait; the shared dial is bounded by
// the handshake timeout and the endpoint's lifetime.
func (p *connPool) get(ctx context.Context, addr string) (*peerConn, error) {
	p.mu.Lock()
	if pc, ok := p.conns[addr]; ok && pc.alive() {
		p.mu.Unlock()
		return pc, nil
	}
	p.mu.Unlock()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: resolving %q: %w", ErrPeerUnavailable, addr, err)
	}
	key := ua.String()

	p.mu.Lock()
	if err := p.e.ctx.Err(); err != nil {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if pc, ok := p.conns[key]; ok && pc.alive() {
		p.mu.Unlock()
		return pc, nil
	}
	if b, ok := p.backoff[key]; ok && p.e.cfg.Now().Before(b.next) {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: %s: in reconnect backoff after: %w", ErrPeerUnavailable, key, b.err)
	}
	d, ok := p.dials[key]
	if !ok {
		d = &dialCall{done: make(chan struct{})}
		p.dials[key] = d
		p.e.wg.Go(func() { p.dial(d, key, ua) })
	}
	p.mu.Unlock()

	select {
	case <-d.done:
		return d.pc, d.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *connPool) dial(d *dialCall, key string, ua *net.UDPAddr) {
	ctx, cancel := context.WithTimeout(p.e.ctx, p.e.cfg.HandshakeTimeout)
	defer cancel()
	pc, err := p.e.dialPeer(ctx, ua)

	p.mu.Lock()
	delete(p.dials, key)
	if err != nil {
		b := p.backoff[key]
		if b == nil {
			b = &backoffState{delay: p.e.cfg.DialBackoffMin}
			p.backoff[key] = b
		} else {
			b.delay = min(2*b.delay, p.e.cfg.DialBackoffMax)
		}
		b.next, b.err = p.e.cfg.Now().Add(b.delay), err
		d.err = fmt.Errorf("%w: dialing %s: %w", ErrPeerUnavailable, key, err)
		p.mu.Unlock()
		close(d.done)
		p.e.log.Debug("dial failed", "addr", key, "err", err)
		return
	}
	delete(p.backoff, key)
	if old, ok := p.conns[key]; ok && old.alive() {
		// The peer dialed us while we dialed it. Use the registered one, but
		// keep serving this one: the peer may have registered it, and closing
		// duplicates from both sides at once could leave neither.
		d.pc = old
		p.mu.Unlock()
		close(d.done)
		p.e.serveConn(pc)
		return
	}
	p.conns[key] = pc
	d.pc = pc
	p.mu.Unlock()
	close(d.done)
	p.e.serveConn(pc)
}

func (e *Endpoint) dialPeer(ctx context.Context, ua *net.UDPAddr) (*peerConn, error) {
	conn, err := e.tr.Dial(ctx, ua, e.clientConfig(), e.qconf)
	if err != nil {
		return nil, err
	}
	peer, err := peerFromState(conn, conn.ConnectionState().TLS)
	if err != nil {
		conn.CloseWithError(ConnCodeBadIdentity, "no usable identity")
		return nil, fmt.Errorf("server at %s has no usable node identity: %w", ua, err)
	}
	return newPeerConn(conn, peer, false), nil
}
