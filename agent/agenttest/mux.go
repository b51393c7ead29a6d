package agenttest

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/vanguard/vanguardgrpc"
	"google.golang.org/grpc"

	"github.com/agentmesh/meshnode/internal/connectjson"
)

// connMux splits one Unix socket the way a real node does: connections that
// open with the HTTP/2 preface go to grpc-go, everything else is HTTP/1.1
// served by vanguard as Connect JSON over the same gRPC services.
type connMux struct {
	ln      net.Listener
	grpcCh  chan net.Conn
	httpSrv *http.Server
	done    chan struct{}
	wg      sync.WaitGroup
}

// sniffTimeout cuts off a connection that sends nothing, so a stalled client
// cannot pin a goroutine.
const sniffTimeout = 5 * time.Second

func listenMux(path string, srv *grpc.Server) (*connMux, error) {
	transcoder, err := vanguardgrpc.NewTranscoder(srv)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	m := &connMux{
		ln:      ln,
		grpcCh:  make(chan net.Conn),
		httpSrv: &http.Server{Handler: connectjson.Defaults(transcoder), ReadHeaderTimeout: sniffTimeout},
		done:    make(chan struct{}),
	}
	httpCh := make(chan net.Conn)
	m.wg.Go(func() { m.httpSrv.Serve(&chanListener{ch: httpCh, done: m.done, addr: ln.Addr()}) })
	m.wg.Go(func() { m.accept(httpCh) })
	return m, nil
}

func (m *connMux) grpcListener() net.Listener {
	return &chanListener{ch: m.grpcCh, done: m.done, addr: m.ln.Addr()}
}

func (m *connMux) accept(httpCh chan net.Conn) {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.wg.Go(func() { m.route(c, httpCh) })
	}
}

var h2Preface = []byte("PRI * HTTP/2.0")

func (m *connMux) route(c net.Conn, httpCh chan net.Conn) {
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReader(c)
	head, err := br.Peek(len(h2Preface))
	if err != nil && len(head) == 0 {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	to := httpCh
	if bytes.Equal(head, h2Preface) {
		to = m.grpcCh
	}
	select {
	case to <- &peekedConn{Conn: c, r: br}:
	case <-m.done:
		c.Close()
	}
}

func (m *connMux) close() {
	close(m.done)
	m.ln.Close()
	m.httpSrv.Close()
	m.wg.Wait()
}

// peekedConn replays the bytes read while sniffing.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }
