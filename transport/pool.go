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
	// joinState is set on accepted join connections (see admitJoinConn).
	joinState *joinState

	idleMu sync.Mutex
	idle   []*rpcStream
}

// rpcStream is a pooled client RPC stream with its reusable request buffer.
type rpcStream struct {
	*quic.Stream
	buf []byte
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
	conns   map[string]*peerConn   // by canonical remote address: the one calls use
	all     map[*peerConn]struct{} // every served connection, to close on shutdown
	dials   map[string]*dialCall
	backoff map[string]*backoffState
}

type dialCall struct {
	want     expectation // who must answer (Config.ExpectedPeer)
	done     chan struct{}
	finished bool // guarded by connPool.mu
	pc       *peerConn
	err      error
}

// finish completes the call for its waiters once; p.mu must be held.
func (d *dialCall) finish(pc *peerConn, err error) {
	if d.finished {
		return
	}
	d.finished = true
	d.pc, d.err = pc, err
	close(d.done)
}

type backoffState struct {
	next  time.Time
	delay time.Duration
	err   error
}

func (p *connPool) init(e *Endpoint) {
	p.e = e
	p.conns = map[string]*peerConn{}
	p.all = map[*peerConn]struct{}{}
	p.dials = map[string]*dialCall{}
	p.backoff = map[string]*backoffState{}
}

// adopt registers an accepted connection, replacing any registered one to
// that address. A peer dials only when it holds no live connection to us,
// so a new inbound connection means the peer restarted (our old one is
// stale and may take an idle timeout to notice) or both sides dialed at
// once (both connections stay up and serve; each side uses one).
func (p *connPool) adopt(pc *peerConn) {
	key := pc.conn.RemoteAddr().String()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[key] = pc
	delete(p.backoff, key)
	// Both sides dialing at once (memberlist's join storm) would cost two
	// handshakes; callers waiting on our dial take the peer's connection now,
	// if it is the node they expect there.
	if d, ok := p.dials[key]; ok && d.want.admits(pc.peer.ID) {
		d.finish(pc, nil)
	}
}

// goIfOpen runs f on an endpoint goroutine unless the endpoint is closing.
// Holding p.mu orders it against Close (cancel, then closeAll takes p.mu,
// then wg.Wait), so no goroutine is added while Close waits.
func (p *connPool) goIfOpen(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.e.ctx.Err() != nil {
		return false
	}
	p.e.wg.Go(f)
	return true
}

// lookup returns the live connection registered under addr exactly as
// given (the fast path: callers usually pass canonical ip:port strings),
// if its peer is the node expected there.
func (p *connPool) lookup(addr string) *peerConn {
	x := p.e.expect(addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc, ok := p.conns[addr]; ok && pc.alive() && x.admits(pc.peer.ID) {
		return pc
	}
	return nil
}

// track records a connection being served, unless the endpoint is closing
// (then it is closed at once).
func (p *connPool) track(pc *peerConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.e.ctx.Err() != nil {
		pc.conn.CloseWithError(ConnCodeShutdown, "endpoint shutting down")
		return false
	}
	p.all[pc] = struct{}{}
	return true
}

func (p *connPool) forget(pc *peerConn) {
	key := pc.conn.RemoteAddr().String()
	p.mu.Lock()
	delete(p.all, pc)
	if p.conns[key] == pc {
		delete(p.conns, key)
	}
	p.mu.Unlock()
}

func (p *connPool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *connPool) peers() []Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Peer, 0, len(p.conns))
	for _, pc := range p.conns {
		if pc.alive() {
			out = append(out, pc.peer)
		}
	}
	return out
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	conns := make([]*peerConn, 0, len(p.all))
	for pc := range p.all {
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
//
// When Config.ExpectedPeer names the node that should answer at addr, only
// a connection to that node is returned: a registered one to another node
// is passed over, and the dial fails in the handshake if another answers.
func (p *connPool) get(ctx context.Context, addr string) (*peerConn, error) {
	x := p.e.expect(addr)
	p.mu.Lock()
	if pc, ok := p.conns[addr]; ok && pc.alive() && x.admits(pc.peer.ID) {
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
	var passedOver *peerConn
	if pc, ok := p.conns[key]; ok && pc.alive() {
		if x.admits(pc.peer.ID) {
			p.mu.Unlock()
			return pc, nil
		}
		// Another node holds the connection from that address (the
		// expected one moved, or it was never there). Dial: the handshake
		// decides who answers.
		passedOver = pc
	}
	if b, ok := p.backoff[key]; ok && p.e.cfg.Clock.Now().Before(b.next) {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: %s: in reconnect backoff after: %w", ErrPeerUnavailable, key, b.err)
	}
	d, ok := p.dials[key]
	if !ok {
		d = &dialCall{want: x, done: make(chan struct{})}
		p.dials[key] = d
		p.e.wg.Go(func() { p.dial(d, key, ua) })
	}
	p.mu.Unlock()
	if passedOver != nil {
		p.e.refusedUnexpected(passedOver.peer.ID, key, x)
	}

	select {
	case <-d.done:
		if d.err == nil && !x.admits(d.pc.peer.ID) { // a dial another caller started with another expectation
			p.e.refusedUnexpected(d.pc.peer.ID, key, x)
			return nil, fmt.Errorf("%w: %w", ErrPeerUnavailable, x.mismatch(d.pc.peer.ID, key))
		}
		return d.pc, d.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *connPool) dial(d *dialCall, key string, ua *net.UDPAddr) {
	ctx, cancel := context.WithTimeout(p.e.ctx, p.e.cfg.HandshakeTimeout)
	defer cancel()
	pc, err := p.e.dialPeer(ctx, ua, d.want)

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
		b.next, b.err = p.e.cfg.Clock.Now().Add(b.delay), err
		d.finish(nil, fmt.Errorf("%w: dialing %s: %w", ErrPeerUnavailable, key, err))
		p.mu.Unlock()
		p.e.log.Debug("dial failed", "addr", key, "err", err)
		return
	}
	delete(p.backoff, key)
	if old, ok := p.conns[key]; ok && old.alive() && d.want.admits(old.peer.ID) {
		// The peer dialed us while we dialed it. Use the registered one, but
		// keep serving this one: the peer may have registered it, and closing
		// duplicates from both sides at once could leave neither.
		d.finish(old, nil)
		p.mu.Unlock()
		p.e.serveConn(pc)
		return
	}
	p.conns[key] = pc
	d.finish(pc, nil)
	p.mu.Unlock()
	p.e.serveConn(pc)
}

func (e *Endpoint) dialPeer(ctx context.Context, ua *net.UDPAddr, want expectation) (*peerConn, error) {
	e.dials.Add(1)
	tc := e.clientConfig()
	e.pinPeer(tc, ua.String(), want)
	conn, err := e.tr.Dial(ctx, ua, tc, e.qconf)
	if err != nil {
		e.dialFailures.Add(1)
		return nil, err
	}
	peer, err := peerFromState(conn, conn.ConnectionState().TLS)
	if err == nil && !want.admits(peer.ID) { // pinPeer refused it already; never trust one check alone
		err = want.mismatch(peer.ID, ua.String())
	}
	if err != nil {
		conn.CloseWithError(ConnCodeBadIdentity, "no usable identity")
		return nil, fmt.Errorf("server at %s has no usable node identity: %w", ua, err)
	}
	return newPeerConn(conn, peer, false), nil
}
