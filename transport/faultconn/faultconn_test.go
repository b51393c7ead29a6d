package faultconn_test

import (
	"net"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/transport/faultconn"
)

func pair(t *testing.T, cfg faultconn.Config) (*faultconn.Conn, net.PacketConn) {
	t.Helper()
	c, err := faultconn.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return c, peer
}

// received counts packets arriving at pc within d.
func received(t *testing.T, pc net.PacketConn, d time.Duration) int {
	t.Helper()
	n := 0
	buf := make([]byte, 64)
	pc.SetReadDeadline(time.Now().Add(d))
	for {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			return n
		}
		n++
	}
}

func TestDropRateIsSeededAndApplied(t *testing.T) {
	count := func() uint64 {
		c, peer := pair(t, faultconn.Config{Seed: 7, DropRate: 0.3})
		for range 1000 {
			c.WriteTo([]byte("x"), peer.LocalAddr())
		}
		return c.Stats().Dropped
	}
	a, b := count(), count()
	if a != b {
		t.Fatalf("same seed dropped %d then %d", a, b)
	}
	if a < 200 || a > 400 {
		t.Fatalf("dropped %d of 1000 at rate 0.3", a)
	}
}

func TestPartitionBothWaysAndHeal(t *testing.T) {
	c, peer := pair(t, faultconn.Config{})
	c.Partition(peer.LocalAddr().String())
	c.WriteTo([]byte("out"), peer.LocalAddr())
	if n := received(t, peer, 100*time.Millisecond); n != 0 {
		t.Fatalf("partitioned write delivered %d packets", n)
	}
	peer.WriteTo([]byte("in"), c.LocalAddr())
	c.PacketConn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, _, err := c.ReadFrom(make([]byte, 8)); err == nil {
		t.Fatal("partitioned read delivered a packet")
	}
	c.PacketConn.SetReadDeadline(time.Time{})
	c.Heal()
	c.WriteTo([]byte("out"), peer.LocalAddr())
	if n := received(t, peer, time.Second); n != 1 {
		t.Fatalf("after heal got %d packets, want 1", n)
	}
}

func TestDelay(t *testing.T) {
	c, peer := pair(t, faultconn.Config{Delay: 50 * time.Millisecond})
	start := time.Now()
	c.WriteTo([]byte("x"), peer.LocalAddr())
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := peer.ReadFrom(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("delayed packet arrived after %v, want >= 50ms", el)
	}
	c.SetDelay(0, 0)
	if c.Stats().Delayed != 1 {
		t.Fatalf("stats: %+v", c.Stats())
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := faultconn.Listen("127.0.0.1:0", faultconn.Config{DropRate: 2}); err == nil {
		t.Fatal("DropRate 2 accepted")
	}
}
