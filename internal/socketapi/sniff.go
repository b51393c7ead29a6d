package socketapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// http2Preface starts every HTTP/2 connection (RFC 9113 §3.4). Clients on
// the socket speak prior-knowledge h2c, so the preface is the first thing
// they send; anything else is treated as HTTP/1.1.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// connSplitter accepts from one listener and hands each connection to the
// gRPC or the HTTP listener by its first bytes: HTTP/2 whose first request
// is gRPC goes to grpc-go, everything else (HTTP/1.1, and Connect over
// HTTP/2 prior knowledge) to net/http. Sniffing happens on a
// goroutine per connection under a deadline, so a client that connects and
// says nothing cannot stall the accept loop.
type connSplitter struct {
	root        net.Listener
	sniffWindow time.Duration
	h2, h1      *chanListener
}

func newConnSplitter(root net.Listener, sniffWindow time.Duration) *connSplitter {
	return &connSplitter{
		root:        root,
		sniffWindow: sniffWindow,
		h2:          newChanListener(root.Addr()),
		h1:          newChanListener(root.Addr()),
	}
}

// run accepts until the root listener closes, then closes both children.
func (s *connSplitter) run(ctx context.Context) {
	defer s.h1.Close()
	defer s.h2.Close()
	for {
		c, err := s.root.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go s.route(ctx, c)
	}
}

func (s *connSplitter) route(ctx context.Context, c net.Conn) {
	c.SetReadDeadline(time.Now().Add(s.sniffWindow))
	br := bufio.NewReaderSize(c, 4096)
	head, err := br.Peek(len(http2Preface))
	if err != nil && len(head) == 0 {
		c.Close()
		return
	}
	var pc net.Conn = &peekedConn{Conn: c, r: br}
	target := s.h1
	if bytes.Equal(head, http2Preface) {
		target = s.h2
		if !h2IsGRPC(c, br) {
			target, pc = s.h1, newAckDropConn(c, br)
		}
	}
	c.SetReadDeadline(time.Time{})
	if !target.deliver(ctx, pc) {
		c.Close()
	}
}

// peekedConn replays the sniffed bytes before the rest of the stream.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Unwrap gives access to the underlying connection (for peer credentials).
func (c *peekedConn) Unwrap() net.Conn { return c.Conn }

// chanListener is a net.Listener fed by connSplitter.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(ctx context.Context, c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	case <-ctx.Done():
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
