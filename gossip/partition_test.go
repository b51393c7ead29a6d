package gossip

import (
	"context"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/faultconn"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

// A partition over real QUIC: two sides of two nodes black-hole each other
// (faultconn under each endpoint) until each declares the other dead; after
// the heal, Reconnect (the node calls it every 5 s) brings them together.
func TestPartitionHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("a partition needs the suspicion timeout to run out")
	}
	h := newHarness(t, overQUIC, LocalConfig())
	names := []string{"p0", "p1", "p2", "p3"}
	conns := map[string]*faultconn.Conn{}
	for _, name := range names {
		fc, err := faultconn.Listen("127.0.0.1:0", faultconn.Config{})
		if err != nil {
			t.Fatal(err)
		}
		conns[name] = fc
		ep := transporttest.NewEndpointConfig(t, name, transport.Config{Logger: h.epLogger, PacketConn: fc})
		h.mu.Lock()
		h.eps[name] = ep
		h.mu.Unlock()
	}
	nodes := map[string]*Gossip{}
	for _, name := range names {
		nodes[name] = h.start(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, name := range names[1:] {
		if _, err := nodes[name].Join(ctx, []string{nodes["p0"].Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "4 nodes to converge", h.converged)

	sides := [][]string{{"p0", "p1"}, {"p2", "p3"}}
	for i, side := range sides {
		for _, name := range side {
			for _, other := range sides[1-i] {
				conns[name].Partition(conns[other].LocalAddr().String())
			}
		}
	}
	waitFor(t, 40*time.Second, "each side to declare the other dead", func() bool {
		for i, side := range sides {
			for _, name := range side {
				for _, other := range sides[1-i] {
					if nodes[name].NodeAlive(other) {
						return false
					}
				}
			}
		}
		return true
	})
	for i, side := range sides { // each side still sees its own half
		for _, name := range side {
			if !nodes[name].NodeAlive(sides[i][0]) || !nodes[name].NodeAlive(sides[i][1]) {
				t.Fatalf("%s lost its own side during the partition", name)
			}
		}
	}

	for _, fc := range conns {
		fc.Heal()
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(500 * time.Millisecond):
			}
			for _, g := range nodes {
				g.Reconnect()
			}
		}
	}()
	waitFor(t, 30*time.Second, "the healed partition to converge", h.converged)
}
