package transport_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

// newJoinServer is an endpoint serving join connections, with a "sign"
// join handler that echoes its request.
func newJoinServer(t *testing.T, cfg transport.Config, logs *syncBuffer) *transport.Endpoint {
	t.Helper()
	cfg.JoinTLS = &tls.Config{Certificates: []tls.Certificate{*transporttest.SharedCA().NodeCert(t, td, "srv")}}
	if logs != nil {
		cfg.Logger = slogTo(logs)
	}
	srv := transporttest.NewEndpointConfig(t, "srv", cfg)
	srv.HandleJoin("sign", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		return append([]byte("signed:"), req...), nil
	})
	srv.Handle("probe", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		return []byte("ok"), nil
	})
	return srv
}

// rawJoinConn dials addr on the join ALPN from localIP, without a
// certificate, as an unauthenticated peer would.
func rawJoinConn(t *testing.T, addr, localIP string) (*quic.Conn, error) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(localIP)})
	if err != nil {
		t.Fatalf("binding %s: %v", localIP, err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { tr.Close(); udp.Close() })
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{transport.JoinALPN}, MinVersion: tls.VersionTLS13}
	conn, err := tr.Dial(ctx, ua, tc, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, err
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	context.AfterFunc(conn.Context(), func() { tr.Close(); udp.Close() })
	return conn, nil
}

// joinCall makes one "sign" call on a fresh stream of conn.
func joinCall(conn *quic.Conn, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	req := rpcRequest("sign", []byte(body))
	if _, err := s.Write(append([]byte{byte(transport.ChannelRPC)}, frame(uint32(len(req)), req)...)); err != nil {
		return err
	}
	resp, err := transport.ReadFrame(s, 1<<20)
	if err != nil {
		return err
	}
	if string(resp) != "\x00signed:"+body {
		return errors.New("unexpected answer " + string(resp))
	}
	return nil
}

// assertRefused checks that a join connection was refused: the handshake
// failed or the server closed the connection with ConnCodeRefused.
func assertRefused(t *testing.T, conn *quic.Conn, err error) {
	t.Helper()
	if err != nil {
		return
	}
	select {
	case <-conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("join connection over the limit stayed open")
	}
	var ae *quic.ApplicationError
	if cause := context.Cause(conn.Context()); !errors.As(cause, &ae) || ae.ErrorCode != transport.ConnCodeRefused {
		t.Fatalf("connection closed with %v, want application error %#x", cause, uint64(transport.ConnCodeRefused))
	}
}

func TestJoinConnectionLimits(t *testing.T) {
	logs := &syncBuffer{}
	srv := newJoinServer(t, transport.Config{MaxJoinConnsPerIP: 2, MaxJoinConns: 3}, logs)
	addr := srv.Addr().String()
	var open []*quic.Conn
	for i := range 2 {
		c, err := rawJoinConn(t, addr, "127.0.0.1")
		if err != nil {
			t.Fatalf("join connection %d: %v", i, err)
		}
		if err := joinCall(c, "a"); err != nil {
			t.Fatalf("join call on connection %d: %v", i, err)
		}
		open = append(open, c)
	}
	for range 3 { // over the per-source limit, three times: counted thrice, logged once
		c, err := rawJoinConn(t, addr, "127.0.0.1")
		assertRefused(t, c, err)
	}
	if r := srv.Refusals(); r.JoinConnsPerIP != 3 {
		t.Fatalf("refusals %+v, want JoinConnsPerIP 3", r)
	}
	if n := strings.Count(logs.String(), "too many open from this source"); n != 1 {
		t.Fatalf("per-source refusal logged %d times, want once a minute:\n%s", n, logs.String())
	}
	// Another source gets the last slot of the total...
	c, err := rawJoinConn(t, addr, "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if err := joinCall(c, "b"); err != nil {
		t.Fatal(err)
	}
	// ...and nothing more.
	c2, err := rawJoinConn(t, addr, "127.0.0.2")
	assertRefused(t, c2, err)
	if r := srv.Refusals(); r.JoinConns != 1 {
		t.Fatalf("refusals %+v, want JoinConns 1", r)
	}
	// A closed connection gives its slot back.
	open[0].CloseWithError(0, "done")
	waitFor(t, 5*time.Second, "the slot to be released", func() bool {
		c, err := rawJoinConn(t, addr, "127.0.0.1")
		return err == nil && joinCall(c, "c") == nil
	})
}

func TestJoinStreamFrameAndIdleLimits(t *testing.T) {
	const idle = 1500 * time.Millisecond
	srv := newJoinServer(t, transport.Config{MaxJoinStreams: 2, JoinIdleTimeout: idle}, nil)
	conn, err := rawJoinConn(t, srv.Addr().String(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	// Two streams that never send a request hold both stream slots...
	var stalled []*quic.Stream
	for range 2 {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte{byte(transport.ChannelRPC)})
		stalled = append(stalled, s)
	}
	waitFor(t, 5*time.Second, "the third stream to be refused", func() bool {
		err := joinCall(conn, "x")
		var se *quic.StreamError
		return errors.As(err, &se) && se.Remote && se.ErrorCode == transport.CodeRefused
	})
	if r := srv.Refusals(); r.JoinStreams == 0 {
		t.Fatalf("refusals %+v, want JoinStreams counted", r)
	}
	// ...until JoinIdleTimeout ends them,
	for _, s := range stalled {
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := s.Read(make([]byte, 1))
		var se *quic.StreamError
		if !errors.As(err, &se) || se.ErrorCode != transport.CodeSlowFrame {
			t.Fatalf("stalled join stream: %v, want reset %#x", err, uint64(transport.CodeSlowFrame))
		}
	}
	// and then the idle connection is closed too.
	select {
	case <-conn.Context().Done():
	case <-time.After(3 * idle):
		t.Fatal("idle join connection not closed")
	}
	if r := srv.Refusals(); r.JoinIdle != 1 || r.SlowFrames != 2 {
		t.Fatalf("refusals %+v, want JoinIdle 1 and SlowFrames 2", r)
	}

	// Frames above MaxJoinFrameSize are refused before allocation.
	conn, err = rawJoinConn(t, srv.Addr().String(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint32{4 << 20, 16<<10 + 1} {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Write(append([]byte{byte(transport.ChannelRPC)}, frame(n, nil)...))
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = s.Read(make([]byte, 1))
		var se *quic.StreamError
		if !errors.As(err, &se) || se.ErrorCode != transport.CodeFrameTooLarge {
			t.Fatalf("join frame of %d bytes: %v, want reset %#x", n, err, uint64(transport.CodeFrameTooLarge))
		}
	}
	if err := joinCall(conn, strings.Repeat("j", 8<<10)); err != nil {
		t.Fatalf("join request under the cap: %v", err)
	}
}

// The real join request and response of pki must pass the join limits
// with margin: a join runs end to end through an endpoint with default
// limits, and the largest request pki would accept still fits the cap.
func TestRealJoinFitsJoinLimits(t *testing.T) {
	const cluster = "join.test"
	ctx := ctxT(t)
	ca, creds, err := pki.Bootstrap(ctx, pki.NewMemStore(), cluster, "seed", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src, err := pki.NewTLSSource(pki.TLSSourceConfig{
		TrustDomain: cluster,
		Roots:       creds.RootPool,
		Certificate: constCert(creds.TLSCertificate()),
		Logger:      transporttest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	seed := transporttest.NewEndpointConfig(t, "seed", transport.Config{TLS: src, JoinTLS: src.JoinServerConfig()})
	seed.HandleJoin("join", func(ctx context.Context, _ transport.Peer, body []byte) ([]byte, error) {
		req := &meshnodev1.JoinRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			return nil, err
		}
		resp, err := ca.Join(ctx, req)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(resp)
	})
	limit := transport.DefaultConfig().MaxJoinFrameSize
	// frameSize is a request's frame on the wire: method, timeout, body.
	frameSize := func(body []byte) int { return len(rpcRequest("join", body)) + 8 }

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256", ecKey}, {"rsa-4096", rsaKey}} {
		raw, err := ca.CreateToken(ctx, pki.TokenRequest{Role: meshnodev1.JoinRole_JOIN_ROLE_SERVER})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := pki.ParseToken(raw)
		if err != nil {
			t.Fatal(err)
		}
		req, err := pki.NewJoinRequest(raw, "node-"+k.name, k.key)
		if err != nil {
			t.Fatal(err)
		}
		req.Role = meshnodev1.JoinRole_JOIN_ROLE_SERVER
		body, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		out, err := transport.CallJoin(ctx, seed.Addr().String(), pki.JoinClientTLS(tok), "join", body)
		if err != nil {
			t.Fatalf("%s: join through default limits: %v", k.name, err)
		}
		resp := &meshnodev1.JoinResponse{}
		if err := proto.Unmarshal(out, resp); err != nil || len(resp.GetChain()) == 0 {
			t.Fatalf("%s: join response: %v", k.name, err)
		}
		t.Logf("%s: join request frame %d bytes (cap %d), response %d bytes", k.name, frameSize(body), limit, len(out))
		if frameSize(body) > limit/4 {
			t.Errorf("%s: join request of %d bytes leaves less than 4x margin under MaxJoinFrameSize %d", k.name, frameSize(body), limit)
		}
	}
	// The largest request pki's own limits let through.
	worst, err := proto.Marshal(&meshnodev1.JoinRequest{
		Token:    strings.Repeat("t", pki.MaxTokenSize),
		Csr:      make([]byte, pki.MaxCSRSize),
		NodeName: strings.Repeat("n", 128),
		Role:     meshnodev1.JoinRole_JOIN_ROLE_SERVER,
	})
	if err != nil {
		t.Fatal(err)
	}
	if frameSize(worst) > limit {
		t.Errorf("the largest join request pki accepts is %d bytes, above MaxJoinFrameSize %d", frameSize(worst), limit)
	}
	t.Logf("largest request pki accepts: %d bytes", frameSize(worst))
}

// slogTo logs every level to w.
func slogTo(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
