package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/quic-go/quic-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

func echo(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) { return req, nil }

func TestConcurrentDialsShareOneConnection(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	b.Handle("echo", echo)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if _, err := a.Call(ctxT(t), b.Addr().String(), "echo", []byte("x")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if st := a.Stats(); st.Dials != 1 || st.Conns != 1 {
		t.Fatalf("client stats %+v: want exactly one dial and one connection", st)
	}
	if st := b.Stats(); st.Accepts != 1 {
		t.Fatalf("server stats %+v: want one accepted connection", st)
	}
	if p := a.Peers(); len(p) != 1 || p[0].ID != pki.NodeID(td, "b") {
		t.Fatalf("peers %+v", p)
	}
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	b.Handle("echo", echo)
	addr := b.Addr().String()
	if _, err := a.Call(ctxT(t), addr, "echo", nil); err != nil {
		t.Fatal(err)
	}
	b.Close()
	waitFor(t, 5*time.Second, "a to notice b's shutdown", func() bool { return a.Stats().Conns == 0 })
	b2 := transporttest.NewEndpointConfig(t, "b2", transport.Config{BindAddr: addr})
	b2.Handle("echo", echo)
	waitFor(t, 10*time.Second, "a call to the restarted peer", func() bool {
		_, err := a.Call(ctxT(t), addr, "echo", nil)
		return err == nil
	})
	if p := a.Peers(); len(p) != 1 || p[0].ID != pki.NodeID(td, "b2") {
		t.Fatalf("peer at %s is %+v, want the new identity b2", addr, p)
	}
}

func TestDialBackoff(t *testing.T) {
	a := transporttest.NewEndpointConfig(t, "a", transport.Config{HandshakeTimeout: 200 * time.Millisecond, DialBackoffMin: time.Minute, DialBackoffMax: time.Minute})
	// A bound socket that never answers.
	silent := transporttest.NewEndpoint(t, "silent")
	addr := silent.Addr().String()
	silent.Close()
	_, err := a.Call(ctxT(t), addr, "echo", nil)
	if status.Code(err) != codes.Unavailable || !errors.Is(err, transport.ErrPeerUnavailable) {
		t.Fatalf("first call: %v, want Unavailable", err)
	}
	start := time.Now()
	_, err = a.Call(ctxT(t), addr, "echo", nil)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "backoff") {
		t.Fatalf("second call: %v, want fast failure in backoff", err)
	}
	if time.Since(start) > 100*time.Millisecond || a.Stats().Dials != 1 {
		t.Fatalf("backoff did not prevent a redial: %v, %+v", time.Since(start), a.Stats())
	}
}

func TestStreamLimitEnforced(t *testing.T) {
	srv := transporttest.NewEndpointConfig(t, "srv", transport.Config{MaxIncomingStreams: 8, MaxIdleRPCStreams: 4})
	conn, err := rawConn(t, srv.Addr().String(), transport.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if _, err := conn.OpenStream(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if _, err := conn.OpenStream(); !errors.Is(err, &quic.StreamLimitReachedError{}) {
		t.Fatalf("9th stream: %v, want StreamLimitReachedError", err)
	}
}

func TestMemberlistShutdownKeepsEndpoint(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	b.Handle("echo", echo)
	conf := memberlist.DefaultLocalConfig()
	conf.Name = "b"
	conf.Transport = b.Memberlist()
	conf.LogOutput = discard{}
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Call(ctxT(t), b.Addr().String(), "echo", nil); err != nil {
		t.Fatalf("endpoint unusable after memberlist shutdown: %v", err)
	}
	l := b.RaftLayer()
	l.Close()
	if _, err := a.Call(ctxT(t), b.Addr().String(), "echo", nil); err != nil {
		t.Fatalf("endpoint unusable after raft layer close: %v", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestJoinALPN(t *testing.T) {
	ca := transporttest.SharedCA()
	srvCert := ca.NodeCert(t, td, "srv")
	srv := transporttest.NewEndpointConfig(t, "srv", transport.Config{
		JoinTLS: &tls.Config{Certificates: []tls.Certificate{*srvCert}},
	})
	joinPeers := make(chan transport.Peer, 1)
	srv.HandleJoin("sign", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		select {
		case joinPeers <- p:
		default:
		}
		return append([]byte("signed:"), req...), nil
	})
	srv.Handle("probe", echo)
	// The joiner trusts the cluster root only (in production: the token's
	// fingerprint) and has no certificate.
	joinTLS := &tls.Config{
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		},
	}
	resp, err := transport.CallJoin(ctxT(t), srv.Addr().String(), joinTLS, "sign", []byte("csr"))
	if err != nil || string(resp) != "signed:csr" {
		t.Fatalf("join call: %q %v", resp, err)
	}
	if p := <-joinPeers; !p.ID.IsZero() {
		t.Fatalf("join peer has identity %v", p.ID)
	}
	// Node handlers are not served on join connections...
	if _, err := transport.CallJoin(ctxT(t), srv.Addr().String(), joinTLS, "probe", nil); status.Code(err) != codes.Unimplemented {
		t.Fatalf("node method over join ALPN: %v, want Unimplemented", err)
	}
	// ...and join handlers not on node connections.
	a := transporttest.NewEndpoint(t, "a")
	if _, err := a.Call(ctxT(t), srv.Addr().String(), "sign", nil); status.Code(err) != codes.Unimplemented {
		t.Fatalf("join method over node ALPN: %v, want Unimplemented", err)
	}
	// A joiner that does not trust the server's root is refused.
	other := transporttest.NewCA(t, "other")
	bad := joinTLS.Clone()
	bad.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		leaf, _ := x509.ParseCertificate(raw[0])
		_, err := leaf.Verify(x509.VerifyOptions{Roots: other.Pool})
		return err
	}
	if _, err := transport.CallJoin(ctxT(t), srv.Addr().String(), bad, "sign", nil); err == nil {
		t.Fatal("join with an untrusted server succeeded")
	}
}

func TestGossipWriteToNeverWaitsForHandshake(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	silent := transporttest.NewEndpoint(t, "silent")
	addr := silent.Addr().String()
	silent.Close()
	tr := a.Memberlist()
	defer tr.Shutdown()
	start := time.Now()
	if _, err := tr.WriteTo([]byte("ping"), addr); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("WriteTo to a dead peer blocked for %v", el)
	}
}

func TestRaftLayerConnIdentityAndDeadlines(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	lb := b.RaftLayer()
	defer lb.Close()
	if lb.Addr().String() != b.Addr().String() {
		t.Fatalf("raft layer addr %s, endpoint %s", lb.Addr(), b.Addr())
	}
	c, err := a.RaftLayer().Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	s, err := lb.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, ok := transport.ConnPeer(s); !ok || p.ID != pki.NodeID(td, "a") {
		t.Fatalf("accepted conn peer %+v", p)
	}
	if p, ok := transport.ConnPeer(c); !ok || p.ID != pki.NodeID(td, "b") {
		t.Fatalf("dialed conn peer %+v", p)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q %v", buf, err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := c.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: %v, want a timeout net.Error", err)
	}
	s.Close()
	c.SetReadDeadline(time.Time{})
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("after the peer closed, want clean EOF, got %v", err)
	}
}
