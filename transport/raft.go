package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quic-go/quic-go"
)

// raftLayer is the raft.StreamLayer on the endpoint: each raft connection is
// one QUIC stream tagged ChannelRaft. Closing it stops accepting raft
// streams but leaves the endpoint running.
type raftLayer struct {
	e      *Endpoint
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

var _ raft.StreamLayer = (*raftLayer)(nil)

// RaftLayer returns the endpoint's raft.StreamLayer. Raft addresses are
// peers' UDP host:port. After the layer is closed, the next call returns a
// fresh one (a restarted Raft on the same endpoint).
func (e *Endpoint) RaftLayer() raft.StreamLayer {
	e.raftMu.Lock()
	defer e.raftMu.Unlock()
	if e.raft == nil || e.raft.isClosed() {
		e.raft = &raftLayer{e: e, ch: make(chan net.Conn), done: make(chan struct{})}
	}
	return e.raft
}

func (l *raftLayer) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Accept waits for the next incoming raft connection.
func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("raft layer: %w", net.ErrClosed)
	case <-l.e.ctx.Done():
		return nil, fmt.Errorf("raft layer: %w", net.ErrClosed)
	}
}

// Close stops accepting; the endpoint stays up.
func (l *raftLayer) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

// Addr is the endpoint's advertised address: Raft tells peers to reach us there.
func (l *raftLayer) Addr() net.Addr { return l.e.advertise }

// Dial opens a raft connection to the node at address (UDP host:port).
func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.e.ctx, timeout)
	defer cancel()
	return l.e.dialChannel(ctx, string(address), ChannelRaft, l.e.admitRaftDial)
}

// dialChannel opens a stream on channel ch to addr and wraps it as a
// net.Conn. admit, if set, may refuse the node that answered.
func (e *Endpoint) dialChannel(ctx context.Context, addr string, ch Channel, admit func(addr string, p Peer) error) (net.Conn, error) {
	pc, err := e.pool.get(ctx, addr)
	if err != nil {
		return nil, err
	}
	if admit != nil {
		if err := admit(addr, pc.peer); err != nil {
			return nil, err
		}
	}
	s, err := pc.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening %s stream to %s: %w", ch, addr, err)
	}
	if _, err := s.Write([]byte{byte(ch)}); err != nil {
		resetStream(s, CodeCanceled)
		return nil, fmt.Errorf("opening %s stream to %s: %w", ch, addr, err)
	}
	return newStreamConn(s, e.advertise, pc.peer), nil
}

func (e *Endpoint) deliverRaft(pc *peerConn, s *quic.Stream) {
	if !e.raftAdmits(pc.peer) {
		e.refuseRaftStream(pc, s)
		return
	}
	e.raftMu.Lock()
	l := e.raft
	e.raftMu.Unlock()
	if l == nil {
		e.refuseStream(pc, s, CodeRefused, "raft not running", nil)
		return
	}
	c := newStreamConn(s, e.advertise, pc.peer)
	select {
	case l.ch <- c:
	case <-l.done:
		resetStream(s, CodeRefused)
	case <-e.ctx.Done():
		resetStream(s, CodeRefused)
	}
}
