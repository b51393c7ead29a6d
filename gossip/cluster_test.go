package gossip

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func agentsFor(node string, n int, inFlight uint32) []AgentLoad {
	out := make([]AgentLoad, n)
	for i := range out {
		out[i] = AgentLoad{
			AgentID: fmt.Sprintf("%s-agent-%02d", node, i), InFlight: inFlight, Capacity: 8,
			EWMALatency: 3 * time.Millisecond, SuccessRate: 0.99, Status: StatusReady,
		}
	}
	return out
}

// everyoneSees reports whether every live node except skip has agentID's
// entry with the given in-flight count.
func everyoneSees(h *harness, agentID string, inFlight uint32) bool {
	for _, g := range h.live() {
		a, ok := g.Load(agentID)
		if !ok || a.InFlight != inFlight {
			return false
		}
	}
	return true
}

// TestFiveNodes is the small-cluster lifecycle over real QUIC: convergence,
// load spread, forged entries, a crash, a restart and a graceful leave.
func TestFiveNodes(t *testing.T) {
	h := newHarness(t, overQUIC, LocalConfig())
	nodes := h.cluster("n", 5)
	waitFor(t, 15*time.Second, "5 nodes to converge", h.converged)

	for _, g := range nodes {
		if len(g.Members()) != 5 {
			t.Fatalf("%s sees %d members, want 5", g.cfg.Name, len(g.Members()))
		}
		m, _ := g.Member("n3")
		if m.Meta.Role != RoleClient || m.Meta.SPIFFEID == "" || m.Meta.QUICAddr == "" {
			t.Fatalf("%s sees n3's metadata as %+v", g.cfg.Name, m.Meta)
		}
	}

	// Load: every node publishes 60 agents (several messages each).
	for _, g := range nodes {
		h.owners.mu.Lock()
		for _, a := range agentsFor(g.cfg.Name, 60, 1) {
			h.owners.m[a.AgentID] = g.cfg.Name
		}
		h.owners.mu.Unlock()
		if err := g.SetLocalLoad(NodeLoad{InFlight: 30, Capacity: 240, Status: StatusReady}, agentsFor(g.cfg.Name, 60, 1)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "every node's agents everywhere", func() bool {
		for _, g := range nodes {
			for _, m := range g.Members() {
				if m.Agents != 60 || m.Load.InFlight != 30 {
					return false
				}
			}
		}
		return true
	})
	if p := nodes[0].pub; p.parts < 2 {
		t.Fatalf("60 agents fit in %d part(s); the test wants a split table", p.parts)
	}

	// An update reaches everyone.
	upd := agentsFor("n2", 60, 1)
	upd[7].InFlight = 6
	if err := nodes[2].SetLocalLoad(NodeLoad{InFlight: 35, Capacity: 240, Status: StatusReady}, upd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n2's update everywhere", func() bool { return everyoneSees(h, "n2-agent-07", 6) })

	t.Run("forged entries are ignored", func(t *testing.T) { testForgery(t, h, nodes) })

	// Crash n4: declared dead everywhere, its agents leave the view.
	events, cancel := nodes[0].Subscribe()
	defer cancel()
	h.kill("n4")
	waitFor(t, 15*time.Second, "n4 dead everywhere", func() bool {
		for _, g := range h.live() {
			if g.NodeAlive("n4") {
				return false
			}
			if _, ok := g.Load("n4-agent-00"); ok {
				return false
			}
		}
		return true
	})
	waitEvent(t, events, func(ev Event) bool { return ev.Type == EventFail && ev.Member.Name == "n4" && len(ev.Agents) == 60 })
	if m, _ := nodes[0].Member("n4"); m.Status != MemberDead {
		t.Fatalf("n4 status %v, want dead", m.Status)
	}

	// Restart n4 at a new address: it rejoins and republishes.
	n4 := h.start("n4")
	ctx, cancelJoin := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelJoin()
	if _, err := n4.Join(ctx, []string{nodes[1].Addr()}); err != nil {
		t.Fatalf("restarted n4 could not rejoin: %v", err)
	}
	if err := n4.SetLocalLoad(NodeLoad{Status: StatusReady}, agentsFor("n4", 30, 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "restarted n4 alive with its agents everywhere", func() bool {
		return h.converged() && everyoneSees(h, "n4-agent-29", 2)
	})
	waitEvent(t, events, func(ev Event) bool { return ev.Type == EventJoin && ev.Member.Name == "n4" })

	// Graceful leave: status left, not dead.
	if err := nodes[3].Close(); err != nil {
		t.Fatalf("n3 close: %v", err)
	}
	h.mu.Lock()
	delete(h.nodes, "n3")
	h.mu.Unlock()
	// The leave is broadcast at once; if a loaded machine drops that
	// broadcast, the next push-pull (every few seconds) carries it.
	waitFor(t, 30*time.Second, "n3 left everywhere", func() bool {
		for _, g := range h.live() {
			if m, _ := g.Member("n3"); m.Status != MemberLeft {
				return false
			}
		}
		return true
	})
	waitEvent(t, events, func(ev Event) bool { return ev.Type == EventLeave && ev.Member.Name == "n3" })
}

func waitEvent(t *testing.T, events <-chan Event, match func(Event) bool) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event channel closed")
			}
			if match(ev) {
				return
			}
		case <-timeout:
			t.Fatal("timed out waiting for event")
		}
	}
}

// testForgery: n1 turns malicious and injects, through real gossip,
// messages about n0's agents. None may change anyone's view.
func testForgery(t *testing.T, h *harness, nodes []*Gossip) {
	mallory, victim := nodes[1], nodes[0]
	want, ok := nodes[2].Load("n0-agent-03")
	if !ok {
		t.Fatal("n2 has no entry for n0-agent-03")
	}
	before := make(map[string]Stats)
	for _, g := range nodes {
		before[g.cfg.Name] = g.Stats()
	}
	forged := func(node string, seqBoost uint64, agents ...*meshnodev1.GossipAgentLoad) *meshnodev1.GossipLoadBatch {
		p := victim.pub
		p.mu.Lock()
		defer p.mu.Unlock()
		return &meshnodev1.GossipLoadBatch{
			Node: node, Seq: p.seq + seqBoost, LayoutSeq: p.layoutSeq, Part: partOf("n0-agent-03", p.parts),
			Parts: p.parts, NodeLoad: &meshnodev1.GossipNodeLoad{}, Agents: agents,
		}
	}
	evil := &meshnodev1.GossipAgentLoad{AgentId: "n0-agent-03", InFlight: 999, Capacity: 1, Status: meshnodev1.GossipLoadStatus_GOSSIP_LOAD_STATUS_DRAINING}

	// 1. Claims to be n0, signed with mallory's key.
	sb, err := encodeMessage(mallory.cfg.Signer, forged("n0", 1000, evil))
	if err != nil {
		t.Fatal(err)
	}
	forgeries := [][]byte{sb.raw}

	// 2. n0's genuine message, altered in transit (signature kept).
	genuine, err := encodeMessage(victim.cfg.Signer, forged("n0", 2000, proto.Clone(evil).(*meshnodev1.GossipAgentLoad)))
	if err != nil {
		t.Fatal(err)
	}
	var env meshnodev1.GossipSignedBatch
	if err := proto.Unmarshal(genuine.raw[1:], &env); err != nil {
		t.Fatal(err)
	}
	var body meshnodev1.GossipLoadBatch
	proto.Unmarshal(env.Batch, &body)
	body.Seq++
	env.Batch, _ = proto.Marshal(&body)
	altered, _ := proto.Marshal(&env)
	forgeries = append(forgeries, append([]byte{msgLoad}, altered...))

	// 3. A node nobody has a key for.
	ghost, _ := encodeMessage(mallory.cfg.Signer, forged("ghost", 1, evil))
	forgeries = append(forgeries, ghost.raw)

	// 4. Mallory's own, validly signed, claiming n0's agent.
	own, _ := encodeMessage(mallory.cfg.Signer, &meshnodev1.GossipLoadBatch{
		Node: "n1", Seq: mallory.pub.seq + 1_000_000, LayoutSeq: mallory.pub.seq + 1_000_000, Part: 0, Parts: 1,
		NodeLoad: &meshnodev1.GossipNodeLoad{}, Agents: []*meshnodev1.GossipAgentLoad{evil},
	})
	forgeries = append(forgeries, own.raw)

	// 5. Garbage.
	forgeries = append(forgeries, []byte{msgLoad, 0xff, 0xff, 0x01})

	// Honest nodes do not relay what they reject, so only mallory's own
	// transmissions carry the forgeries: repeat them until all have seen them.
	polls := 0
	waitFor(t, 10*time.Second, "every honest node to reject the forgeries", func() bool {
		if polls%10 == 0 {
			for i, raw := range forgeries {
				inject(mallory, fmt.Sprintf("forge/%d", i), raw)
			}
		}
		polls++
		for _, g := range nodes {
			if g == mallory {
				continue
			}
			s, b := g.Stats(), before[g.cfg.Name]
			wantBad := uint64(2)
			if g == victim {
				wantBad = 0 // messages claiming to be from itself are ignored unverified
			}
			if s.BadSignature < b.BadSignature+wantBad || s.UnknownKey < b.UnknownKey+1 || s.Undecodable < b.Undecodable+1 {
				return false
			}
		}
		return true
	})
	for _, g := range nodes {
		if g == mallory {
			continue
		}
		got, ok := g.Load("n0-agent-03")
		if !ok || got.InFlight != want.InFlight || got.Node != "n0" {
			t.Errorf("%s: n0-agent-03 = %+v, %v; want in-flight %d from n0", g.cfg.Name, got, ok, want.InFlight)
		}
	}
}

// TestTwentyNodes: 20 nodes converge over QUIC and load updates reach all.
func TestTwentyNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("20-node cluster")
	}
	h := newHarness(t, overQUIC, LocalConfig())
	nodes := h.cluster("m", 20)
	waitFor(t, 20*time.Second, "20 nodes to converge", h.converged)
	for i, g := range nodes {
		if err := g.SetLocalLoad(NodeLoad{Status: StatusReady}, agentsFor(g.cfg.Name, 3, uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "all 60 agents everywhere", func() bool {
		for i, g := range nodes {
			if !everyoneSees(h, g.cfg.Name+"-agent-02", uint32(i)) {
				return false
			}
		}
		return true
	})
	for _, g := range nodes {
		if s := g.Stats(); s.BadSignature+s.UnknownKey+s.Undecodable != 0 {
			t.Errorf("%s rejected honest messages: %+v", g.cfg.Name, s)
		}
	}
}

// TestDuplicateNameRefused: a second live node with a taken name is refused
// with ErrNameConflict and the original stays in place.
func TestDuplicateNameRefused(t *testing.T) {
	h := newHarness(t, overQUIC, LocalConfig())
	nodes := h.cluster("d", 3)
	waitFor(t, 10*time.Second, "3 nodes to converge", h.converged)
	orig, _ := nodes[0].Member("d2")

	h2 := newHarness(t, overQUIC, LocalConfig())
	h2.keys = h.keys
	impostor := h2.start("d2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := impostor.Join(ctx, []string{nodes[0].Addr()})
	if !errors.Is(err, ErrNameConflict) {
		t.Fatalf("duplicate join: err = %v, want ErrNameConflict", err)
	}
	t.Logf("refused with: %v", err)
	for _, g := range nodes {
		m, _ := g.Member("d2")
		if m.Addr != orig.Addr || m.Status != MemberAlive {
			t.Fatalf("%s now sees d2 as %+v, want the original at %s", g.cfg.Name, m, orig.Addr)
		}
	}
	if nodes[0].Stats().NameConflicts == 0 {
		t.Fatal("seed did not count the conflict")
	}
}

// TestJoinWaitsForSeed: a seed that is not up yet is retried until it is.
func TestJoinWaitsForSeed(t *testing.T) {
	h := newHarness(t, overQUIC, LocalConfig())
	seedAddr := h.endpoint("s0").Addr().String() // endpoint up, gossip not yet
	joiner := h.start("s1")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := joiner.Join(ctx, []string{seedAddr})
		done <- err
	}()
	// Let at least two attempts fail before the seed comes up.
	waitFor(t, 10*time.Second, "two join attempts to fail", func() bool { return joiner.joinAttempts.Load() >= 2 })
	select {
	case err := <-done:
		t.Fatalf("join returned before the seed was up: %v", err)
	default:
	}
	h.start("s0")
	if err := <-done; err != nil {
		t.Fatalf("join: %v", err)
	}
	waitFor(t, 10*time.Second, "2 nodes to converge", h.converged)

	// ctx expiry ends the retries with the context's error.
	lonely := h.start("s2")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := lonely.Join(ctx, []string{"127.0.0.1:1"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join to nowhere: %v, want deadline exceeded", err)
	}
}

// ReconnectTo joins through an address the view does not hold (the
// registry's, after a long partition); an empty list is a no-op.
func TestReconnectToRegisteredAddress(t *testing.T) {
	h := newHarness(t, overQUIC, LocalConfig())
	a, b := h.start("r0"), h.start("r1")
	if n, err := a.ReconnectTo(nil); n != 0 || err != nil {
		t.Fatalf("ReconnectTo(nil) = %d, %v", n, err)
	}
	if a.NumAlive() != 1 || b.NumAlive() != 1 {
		t.Fatalf("the two nodes met before ReconnectTo")
	}
	if n, err := a.ReconnectTo([]string{b.Addr()}); n != 1 || err != nil {
		t.Fatalf("ReconnectTo(b) = %d, %v", n, err)
	}
	waitFor(t, 10*time.Second, "both nodes to see each other", h.converged)
}
