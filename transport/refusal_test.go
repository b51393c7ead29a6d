package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

const td = transporttest.TrustDomain

// provider is a TLSProvider from fixed configs, for presenting bad material.
type provider struct{ server, client *tls.Config }

func (p provider) ServerConfig() *tls.Config { return p.server }
func (p provider) ClientConfig() *tls.Config { return p.client }

func constCert(c *tls.Certificate) func() (*tls.Certificate, error) {
	return func() (*tls.Certificate, error) { return c, nil }
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type revokedNodes map[string]bool

func (r revokedNodes) IsRevoked(_ *big.Int, id pki.ID) bool { return r[id.Node] }

// server is an endpoint whose probe handler records whether it ever ran.
type server struct {
	ep  *transport.Endpoint
	ran atomic.Int32
}

func newServer(t *testing.T, tlsp transport.TLSProvider, logs io.Writer) *server {
	return newServerConfig(t, transport.Config{TLS: tlsp}, logs)
}

// newServerConfig is newServer with cfg's non-zero fields kept.
func newServerConfig(t *testing.T, cfg transport.Config, logs io.Writer) *server {
	s := &server{}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 2 * time.Second
	}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	s.ep = transporttest.NewEndpointConfig(t, "srv", cfg)
	s.ep.Handle("probe", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		s.ran.Add(1)
		return []byte("ok"), nil
	})
	return s
}

// assertServes checks the server still answers a well-behaved peer.
func (s *server) assertServes(t *testing.T) {
	t.Helper()
	good := transporttest.NewEndpoint(t, "good")
	before := s.ran.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := good.Call(ctx, s.ep.Addr().String(), "probe", nil); err != nil || string(resp) != "ok" {
		t.Fatalf("server stopped serving good peers: %q %v", resp, err)
	}
	if s.ran.Load() != before+1 {
		t.Fatal("probe handler did not run for the good peer")
	}
}

func TestHandshakeRefusals(t *testing.T) {
	ca := transporttest.SharedCA()
	foreign := transporttest.NewCA(t, "foreign root")
	nodeURI := func(name string) []*url.URL { return []*url.URL{pki.NodeID(td, name).URL()} }
	clientWith := func(cert *tls.Certificate) transport.TLSProvider {
		return ca.Source(t, td, cert, nil)
	}
	noCert := func() transport.TLSProvider {
		src := ca.Source(t, td, ca.NodeCert(t, td, "anon"), nil)
		c := src.ClientConfig()
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
		return provider{server: src.ServerConfig(), client: c}
	}
	// reason is what must be named: in the server's log when the server
	// refuses, in the caller's error when the client refuses.
	cases := []struct {
		name    string
		client  func() transport.TLSProvider
		revoked pki.Revocations
		server  func() transport.TLSProvider // nil: a good server
		reason  string
	}{
		{name: "no client certificate", client: noCert, reason: pki.ErrNoPeerCertificate.Error()},
		{name: "other CA", client: func() transport.TLSProvider { return clientWith(foreign.NodeCert(t, td, "x")) }, reason: pki.ErrUnknownAuthority.Error()},
		{name: "expired", client: func() transport.TLSProvider {
			return clientWith(ca.Issue(t, transporttest.Leaf{URIs: nodeURI("x"), NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}))
		}, reason: pki.ErrCertExpired.Error()},
		{name: "not yet valid", client: func() transport.TLSProvider {
			return clientWith(ca.Issue(t, transporttest.Leaf{URIs: nodeURI("x"), NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}))
		}, reason: pki.ErrCertNotYetValid.Error()},
		{name: "wrong trust domain", client: func() transport.TLSProvider { return clientWith(ca.NodeCert(t, "other.example", "x")) }, reason: pki.ErrWrongTrustDomain.Error()},
		{name: "two URI SANs", client: func() transport.TLSProvider {
			return clientWith(ca.Issue(t, transporttest.Leaf{URIs: append(nodeURI("x"), pki.NodeID(td, "y").URL())}))
		}, reason: "2 URI SANs"},
		{name: "no URI SAN", client: func() transport.TLSProvider { return clientWith(ca.Issue(t, transporttest.Leaf{})) }, reason: "0 URI SANs"},
		{name: "no clientAuth key usage", client: func() transport.TLSProvider {
			return clientWith(ca.Issue(t, transporttest.Leaf{URIs: nodeURI("x"), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}))
		}, reason: pki.ErrKeyUsage.Error()},
		{name: "revoked", client: func() transport.TLSProvider { return clientWith(ca.NodeCert(t, td, "evil")) },
			revoked: revokedNodes{"evil": true}, reason: pki.ErrRevoked.Error()},
		{name: "agent identity instead of node", client: func() transport.TLSProvider {
			return clientWith(ca.Issue(t, transporttest.Leaf{URIs: []*url.URL{pki.AgentID(td, "n", "a").URL()}}))
		}, reason: "is not a node"},
		{name: "server certificate expired (client refuses)", client: func() transport.TLSProvider { return clientWith(ca.NodeCert(t, td, "x")) },
			server: func() transport.TLSProvider {
				return ca.Source(t, td, ca.Issue(t, transporttest.Leaf{URIs: nodeURI("srv"), NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), nil)
			}, reason: pki.ErrCertExpired.Error()},
		{name: "server from other CA (client refuses)", client: func() transport.TLSProvider { return clientWith(ca.NodeCert(t, td, "x")) },
			server: func() transport.TLSProvider {
				return foreign.Source(t, td, foreign.NodeCert(t, td, "srv"), nil)
			}, reason: pki.ErrUnknownAuthority.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			srvTLS := transport.TLSProvider(nil)
			if tc.server != nil {
				srvTLS = tc.server()
			} else {
				src, err := pki.NewTLSSource(pki.TLSSourceConfig{
					TrustDomain: td,
					Roots:       func() *x509.CertPool { return ca.Pool },
					Certificate: constCert(ca.NodeCert(t, td, "srv")),
					Revocations: tc.revoked,
					Logger:      slog.New(slog.NewTextHandler(logs, nil)),
				})
				if err != nil {
					t.Fatal(err)
				}
				srvTLS = src
			}
			srv := newServer(t, srvTLS, logs)
			bad := transporttest.NewEndpointConfig(t, "bad", transport.Config{TLS: tc.client()})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := bad.Call(ctx, srv.ep.Addr().String(), "probe", nil)
			if err == nil {
				t.Fatal("call with refused certificate succeeded")
			}
			t.Logf("refused: %v", err)
			if n := srv.ran.Load(); n != 0 {
				t.Fatalf("handler ran %d times for a refused peer", n)
			}
			if tc.server == nil {
				srv.assertServes(t)
				if !strings.Contains(logs.String(), tc.reason) {
					t.Errorf("server log does not name the reason %q:\n%s", tc.reason, logs.String())
				}
			} else if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("caller error %q does not name the reason %q", err, tc.reason)
			}
		})
	}
}

// rawConn dials srv as a well-authenticated peer with plain quic-go, to
// send what a well-behaved endpoint never would.
func rawConn(t *testing.T, addr string, alpn string) (*quic.Conn, error) {
	ca := transporttest.SharedCA()
	c := ca.Source(t, td, ca.NodeCert(t, td, "raw"), nil).ClientConfig()
	c.NextProtos = []string{alpn}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, c, &quic.Config{EnableDatagrams: true})
	if err == nil {
		t.Cleanup(func() { conn.CloseWithError(0, "") })
	}
	return conn, err
}

func TestWrongALPNRefused(t *testing.T) {
	srv := newServer(t, nil, nil)
	if _, err := rawConn(t, srv.ep.Addr().String(), "h3"); err == nil {
		t.Fatal("handshake with ALPN h3 succeeded")
	}
	if _, err := rawConn(t, srv.ep.Addr().String(), transport.JoinALPN); err == nil {
		t.Fatal("join ALPN accepted on an endpoint without JoinTLS")
	}
	if srv.ran.Load() != 0 {
		t.Fatal("handler ran")
	}
	srv.assertServes(t)
}

func frame(n uint32, payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, n), payload...)
}

// rpcRequest encodes a request frame body the way the wire does.
func rpcRequest(method string, body []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(method)))
	b = append(b, method...)
	b = binary.AppendUvarint(b, 0)
	return append(b, body...)
}

func TestBadStreamsResetOnlyThatStream(t *testing.T) {
	srv := newServer(t, nil, nil)
	conn, err := rawConn(t, srv.ep.Addr().String(), transport.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	req := rpcRequest("probe", nil)
	cases := []struct {
		name string
		data []byte
		fin  bool
		want quic.StreamErrorCode
	}{
		{"unknown channel tag", []byte{0x7f, 0, 0, 0, 0}, false, transport.CodeUnknownChannel},
		{"channel tag zero", []byte{0}, false, transport.CodeUnknownChannel},
		{"oversized frame", append([]byte{byte(transport.ChannelRPC)}, frame(0xffffffff, nil)...), false, transport.CodeFrameTooLarge},
		{"frame just over the limit", append([]byte{byte(transport.ChannelRPC)}, frame(4<<20+1, nil)...), false, transport.CodeFrameTooLarge},
		{"truncated frame payload", append([]byte{byte(transport.ChannelRPC)}, frame(100, []byte("short"))...), true, transport.CodeBadFrame},
		{"truncated length prefix", []byte{byte(transport.ChannelRPC), 0, 0}, true, transport.CodeBadFrame},
		{"garbage request header", append([]byte{byte(transport.ChannelRPC)}, frame(3, []byte{0xff, 0xff, 0xff})...), false, transport.CodeBadFrame},
		{"oversized stream header", append([]byte{byte(transport.ChannelRPCStream)}, frame(0x7fffffff, nil)...), false, transport.CodeFrameTooLarge},
		{"oversized gossip packet", append([]byte{byte(transport.ChannelPacket)}, frame(0x7fffffff, nil)...), false, transport.CodeFrameTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := s.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			if tc.fin {
				s.Close()
			}
			_, err = s.Read(make([]byte, 16))
			var se *quic.StreamError
			if !errors.As(err, &se) || !se.Remote || se.ErrorCode != tc.want {
				t.Fatalf("got %v, want remote reset with code %#x", err, uint64(tc.want))
			}
			// The same connection still serves a good request.
			good, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			good.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := good.Write(append([]byte{byte(transport.ChannelRPC)}, frame(uint32(len(req)), req)...)); err != nil {
				t.Fatal(err)
			}
			resp, err := transport.ReadFrame(good, 1<<20)
			if err != nil || string(resp) != "\x00ok" {
				t.Fatalf("good request on the same connection: %q %v", resp, err)
			}
			good.Close()
		})
	}
	if n := srv.ran.Load(); n != int32(len(cases)) {
		t.Fatalf("probe ran %d times, want once per good request (%d)", n, len(cases))
	}
	srv.assertServes(t)
}

func TestGarbageDatagramsIgnored(t *testing.T) {
	srv := newServer(t, nil, nil)
	// Non-QUIC UDP garbage at the socket.
	udp, err := net.DialUDP("udp", nil, srv.ep.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for i := range 200 {
		b := make([]byte, 1+i*7%1400)
		for j := range b {
			b[j] = byte(i * j)
		}
		udp.Write(b)
	}
	// Garbage QUIC datagrams from an authenticated peer (no memberlist
	// running: dropped; with memberlist they are its input, fuzzed there).
	conn, err := rawConn(t, srv.ep.Addr().String(), transport.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		conn.SendDatagram([]byte("\xff\x00garbage"))
	}
	srv.assertServes(t)
	if srv.ran.Load() != 1 {
		t.Fatal("handler ran for garbage")
	}
}
