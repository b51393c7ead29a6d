package transport_test

import (
	"context"
	"errors"
	"io"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

func TestRaftPeerAdmission(t *testing.T) {
	var admitA atomic.Bool
	logs := &syncBuffer{}
	b := transporttest.NewEndpointConfig(t, "b", transport.Config{
		Logger:   slogTo(logs),
		RaftPeer: func(p transport.Peer) bool { return p.ID.Node != "a" || admitA.Load() },
	})
	lb := b.RaftLayer()
	defer lb.Close()
	accepted := make(chan string, 4)
	go func() {
		for {
			c, err := lb.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 5)
			io.ReadFull(c, buf)
			accepted <- string(buf)
			c.Close()
		}
	}()
	a := transporttest.NewEndpoint(t, "a")
	dialRaft := func() error {
		c, err := a.RaftLayer().Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("hello")); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err
	}
	for range 2 {
		err := dialRaft()
		var se *quic.StreamError
		if !errors.As(err, &se) || !se.Remote || se.ErrorCode != transport.CodeRefused {
			t.Fatalf("raft stream from a non-admitted node: %v, want reset %#x", err, uint64(transport.CodeRefused))
		}
	}
	if r := b.Refusals(); r.RaftStreams != 2 {
		t.Fatalf("refusals %+v, want RaftStreams 2", r)
	}
	want := "node " + pki.NodeID(td, "a").String() + " is not an admitted server; refusing its raft stream"
	if n := strings.Count(logs.String(), want); n != 1 {
		t.Fatalf("refusal logged %d times, want once a minute, as %q:\n%s", n, want, logs.String())
	}
	select {
	case got := <-accepted:
		t.Fatalf("raft accepted a stream from a non-admitted node: %q", got)
	default:
	}

	admitA.Store(true)
	if err := dialRaft(); !errors.Is(err, io.EOF) {
		t.Fatalf("raft stream from an admitted node: %v, want the peer to read and close", err)
	}
	if got := <-accepted; got != "hello" {
		t.Fatalf("raft read %q", got)
	}

	// Outbound: a raft dial answered by a node that is not a server fails.
	c := transporttest.NewEndpointConfig(t, "c", transport.Config{
		RaftPeer: func(p transport.Peer) bool { return p.ID.Node != "b" },
	})
	_, err := c.RaftLayer().Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
	if !errors.Is(err, transport.ErrNotRaftPeer) || !strings.Contains(err.Error(), pki.NodeID(td, "b").String()) {
		t.Fatalf("raft dial to a non-admitted node: %v, want ErrNotRaftPeer naming it", err)
	}
	if r := c.Refusals(); r.RaftDials != 1 {
		t.Fatalf("refusals %+v, want RaftDials 1", r)
	}
}

func TestDialsPinTheExpectedPeer(t *testing.T) {
	b := transporttest.NewEndpoint(t, "b")
	var ran atomic.Int32
	b.Handle("echo", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		ran.Add(1)
		return req, nil
	})
	var expect atomic.Value
	expect.Store("a")
	a := transporttest.NewEndpointConfig(t, "a", transport.Config{
		ExpectedPeer: func(addr string) (string, bool) {
			if addr != b.Addr().String() {
				return "", false
			}
			return expect.Load().(string), true
		},
	})
	a.Handle("echo", echo)
	_, err := a.Call(ctxT(t), b.Addr().String(), "echo", nil)
	if err == nil {
		t.Fatal("call to b's address expecting node a succeeded")
	}
	for _, name := range []string{pki.NodeID(td, "b").String(), `"a"`} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	t.Logf("refused: %v", err)
	if ran.Load() != 0 {
		t.Fatal("the wrong peer received the call")
	}
	if a.Refusals().UnexpectedPeer == 0 {
		t.Fatalf("refusals %+v, want UnexpectedPeer counted", a.Refusals())
	}

	expect.Store("b")
	waitFor(t, 10*time.Second, "a call expecting b to reach b", func() bool {
		_, err := a.Call(ctxT(t), b.Addr().String(), "echo", nil)
		return err == nil
	})

	// A connection b opened to a is reused for a's calls to b only while b
	// is who a expects at that address.
	c := transporttest.NewEndpoint(t, "c")
	c.Handle("echo", echo)
	ranBefore := ran.Load()
	cAddr := c.Addr().String()
	var cExpect atomic.Value
	cExpect.Store("c")
	d := transporttest.NewEndpointConfig(t, "d", transport.Config{
		ExpectedPeer: func(addr string) (string, bool) {
			if addr != cAddr {
				return "", false
			}
			return cExpect.Load().(string), true
		},
	})
	d.Handle("echo", echo)
	if _, err := c.Call(ctxT(t), d.Addr().String(), "echo", nil); err != nil { // c → d: d holds an inbound conn from c
		t.Fatal(err)
	}
	if _, err := d.Call(ctxT(t), cAddr, "echo", nil); err != nil {
		t.Fatalf("reusing c's connection while expecting c: %v", err)
	}
	cExpect.Store("x")
	if _, err := d.Call(ctxT(t), cAddr, "echo", nil); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("call to c's address expecting x: %v, want a refusal naming x", err)
	}
	if ran.Load() != ranBefore {
		t.Fatal("b's handler ran for calls to c")
	}
}

func TestClosePeersBySerial(t *testing.T) {
	ca := transporttest.SharedCA()
	cert := ca.NodeCert(t, td, "a")
	a := transporttest.NewEndpointConfig(t, "a", transport.Config{TLS: ca.Source(t, td, cert, nil)})
	b := transporttest.NewEndpoint(t, "b")
	b.Handle("echo", echo)
	if _, err := a.Call(ctxT(t), b.Addr().String(), "echo", nil); err != nil {
		t.Fatal(err)
	}
	other := new(big.Int).Add(cert.Leaf.SerialNumber, big.NewInt(1000))
	if n := b.ClosePeersBySerial(func(s *big.Int) bool { return s.Cmp(other) == 0 }); n != 0 {
		t.Fatalf("closed %d connections for a serial nobody holds", n)
	}
	start := time.Now()
	if n := b.ClosePeersBySerial(func(s *big.Int) bool { return s.Cmp(cert.Leaf.SerialNumber) == 0 }); n != 1 {
		t.Fatalf("closed %d connections for a's serial, want 1", n)
	}
	waitFor(t, 2*time.Second, "a's connection to close", func() bool { return a.Stats().Conns == 0 && b.Stats().Conns == 0 })
	t.Logf("connection closed %v after the revocation", time.Since(start))
}
