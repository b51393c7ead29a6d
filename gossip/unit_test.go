package gossip

import (
	"bytes"
	"crypto"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// bare returns a Gossip with everything but memberlist, for unit tests of
// the receive path.
func bare(t *testing.T, name string, keys *keyring) *Gossip {
	t.Helper()
	cfg := LocalConfig()
	cfg.Name, cfg.Signer, cfg.Keys = name, newSigner(t, true), keys
	cfg = cfg.withDefaults()
	cfg.Logger = slog.New(slog.DiscardHandler)
	keys.add(name, cfg.Signer.Public())
	g := &Gossip{cfg: cfg, log: cfg.Logger, view: newView(), table: newTable(), kick: make(chan struct{}, 1), stop: make(chan struct{})}
	g.pub = newPublisher(cfg, time.Now())
	g.hub = newHub(cfg.EventBuffer, &g.counters.eventsDropped)
	g.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: 2, NumNodes: func() int { return 3 }}
	t.Cleanup(g.hub.close)
	return g
}

// publish makes p sign its table and returns the messages.
func publish(t *testing.T, g *Gossip, node NodeLoad, agents []AgentLoad) []*signedBatch {
	t.Helper()
	if _, err := g.pub.set(node, agents); err != nil {
		t.Fatal(err)
	}
	g.pub.lastFlush = time.Time{}
	msgs, err := g.pub.flush(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestReceiveRules(t *testing.T) {
	keys := newKeyring()
	a, b := bare(t, "a", keys), bare(t, "b", keys)
	b.view.set(&memberlist.Node{Name: "a", Addr: []byte{127, 0, 0, 1}, Port: 1}, MemberAlive, time.Now())

	msgs := publish(t, a, NodeLoad{InFlight: 3}, agentsFor("a", 5, 1))
	if len(msgs) != 1 {
		t.Fatalf("5 agents in %d messages", len(msgs))
	}
	deliver := func(raw []byte) { delegate{b}.NotifyMsg(raw) }
	deliver(msgs[0].raw)
	if got, ok := b.Load("a-agent-04"); !ok || got.InFlight != 1 || got.Node != "a" {
		t.Fatalf("entry not applied: %+v %v", got, ok)
	}
	deliver(msgs[0].raw) // duplicate
	if s := b.Stats(); s.MessagesAccepted != 1 || s.MessagesStale != 1 {
		t.Fatalf("duplicate: %+v", s)
	}

	// A newer update, then the old one again: the old never wins.
	upd := agentsFor("a", 5, 1)
	upd[4].InFlight = 7
	newer := publish(t, a, NodeLoad{InFlight: 9}, upd)
	deliver(newer[0].raw)
	deliver(msgs[0].raw)
	if got, _ := b.Load("a-agent-04"); got.InFlight != 7 {
		t.Fatalf("stale overwrote fresh: %+v", got)
	}

	// An agent removed from the table disappears.
	gone := publish(t, a, NodeLoad{}, upd[:4])
	deliver(gone[0].raw)
	if _, ok := b.Load("a-agent-04"); ok {
		t.Fatal("removed agent still present")
	}

	// Unknown node, bad signature, garbage, oversize.
	c := bare(t, "c", newKeyring()) // key not in b's keyring
	deliver(publish(t, c, NodeLoad{}, agentsFor("c", 1, 1))[0].raw)
	forged := publish(t, c, NodeLoad{}, agentsFor("a", 1, 99))[0].batch
	forged.Node, forged.Seq, forged.LayoutSeq = "a", forged.Seq+1e12, forged.Seq+1e12
	sb, _ := encodeMessage(c.cfg.Signer, forged)
	deliver(sb.raw)
	deliver([]byte{msgLoad, 1, 2, 3})
	deliver(append([]byte{msgLoad}, make([]byte, b.cfg.MaxMessageBytes+10)...))
	s := b.Stats()
	if s.UnknownKey != 1 || s.BadSignature != 1 || s.Undecodable != 1 || s.Oversized != 1 {
		t.Fatalf("bad input counters: %+v", s)
	}
	if got, _ := b.Load("a-agent-00"); got.InFlight != 1 {
		t.Fatalf("forged entry applied: %+v", got)
	}

	// The node dies: its entries vanish, and its old messages cannot bring them back.
	b.view.set(&memberlist.Node{Name: "a", Addr: []byte{127, 0, 0, 1}, Port: 1, State: memberlist.StateDead}, MemberDead, time.Now())
	b.table.drop("a")
	deliver(newer[0].raw)
	if _, ok := b.Load("a-agent-00"); ok {
		t.Fatal("dead node's agent in view")
	}
	b.view.set(&memberlist.Node{Name: "a", Addr: []byte{127, 0, 0, 1}, Port: 1}, MemberAlive, time.Now())
	deliver(newer[0].raw) // from before the death: below the floor
	if _, ok := b.Load("a-agent-00"); ok {
		t.Fatal("a message from before the death resurrected an entry")
	}
	deliver(publish(t, a, NodeLoad{}, upd)[0].raw)
	if _, ok := b.Load("a-agent-00"); !ok {
		t.Fatal("rejoined node's fresh message not applied")
	}
}

func TestOwnersFilterForeignClaims(t *testing.T) {
	keys := newKeyring()
	a, m, b := bare(t, "a", keys), bare(t, "m", keys), bare(t, "b", keys)
	own := &owners{m: map[string]string{"a-agent-00": "a"}}
	b.cfg.Owners = own
	for _, n := range []string{"a", "m"} {
		b.view.set(&memberlist.Node{Name: n, Addr: []byte{127, 0, 0, 1}, Port: 1}, MemberAlive, time.Now())
	}
	delegate{b}.NotifyMsg(publish(t, a, NodeLoad{}, agentsFor("a", 1, 1))[0].raw)
	claim := agentsFor("a", 1, 50) // m claims a's agent under its own valid signature
	delegate{b}.NotifyMsg(publish(t, m, NodeLoad{}, claim)[0].raw)
	if got, ok := b.Load("a-agent-00"); !ok || got.Node != "a" || got.InFlight != 1 {
		t.Fatalf("Load = %+v %v, want a's own entry", got, ok)
	}
	// A caller holding the registry record names the owner itself.
	if got, ok := b.LoadOf("a-agent-00", "a"); !ok || got.Node != "a" || got.InFlight != 1 {
		t.Fatalf("LoadOf(owner a) = %+v %v, want a's own entry", got, ok)
	}
	if got, ok := b.LoadOf("a-agent-00", "m"); !ok || got.Node != "m" {
		t.Fatalf("LoadOf(owner m) = %+v %v, want only m's entry", got, ok)
	}
}

func TestSplitUnderBound(t *testing.T) {
	for _, ed := range []bool{true, false} {
		t.Run(fmt.Sprintf("ed25519=%v", ed), func(t *testing.T) {
			keys := newKeyring()
			a := bare(t, "a", keys)
			a.cfg.Signer = newSigner(t, ed)
			a.pub = newPublisher(a.cfg, time.Now())
			agents := make([]AgentLoad, 500)
			for i := range agents {
				agents[i] = AgentLoad{AgentID: fmt.Sprintf("agent-%03d-%s", i, strings.Repeat("x", i%40)), InFlight: uint32(i), Capacity: 1 << 20,
					EWMALatency: time.Duration(i) * time.Second, SuccessRate: 0.5, Status: StatusDraining}
			}
			msgs := publish(t, a, NodeLoad{InFlight: 1 << 30}, agents)
			seen := map[string]bool{}
			for _, sb := range msgs {
				if len(sb.raw) > a.cfg.MaxMessageBytes {
					t.Fatalf("message of %d bytes, bound %d", len(sb.raw), a.cfg.MaxMessageBytes)
				}
				d, err := decodeMessage(sb.raw, a.cfg.MaxMessageBytes)
				if err != nil {
					t.Fatal(err)
				}
				if !verify(a.cfg.Signer.Public(), d) {
					t.Fatal("own signature does not verify")
				}
				for _, ag := range d.batch.GetAgents() {
					if seen[ag.GetAgentId()] {
						t.Fatalf("agent %s in two parts", ag.GetAgentId())
					}
					seen[ag.GetAgentId()] = true
				}
			}
			if len(seen) != 500 {
				t.Fatalf("%d of 500 agents sent", len(seen))
			}
			t.Logf("500 agents in %d messages", len(msgs))
			// One significant change re-sends one part only.
			agents[10].Status = StatusReady
			if again := publish(t, a, NodeLoad{InFlight: 1 << 30}, agents); len(again) != 1 {
				t.Fatalf("one change re-sent %d parts", len(again))
			}
			// An insignificant change sends nothing.
			agents[11].EWMALatency += agents[11].EWMALatency / 100
			if send, _ := a.pub.set(NodeLoad{InFlight: 1 << 30}, agents); send {
				t.Fatal("a 1% latency change was deemed significant")
			}
		})
	}
}

func TestLayoutChangeSupersedesParts(t *testing.T) {
	keys := newKeyring()
	a, b := bare(t, "a", keys), bare(t, "b", keys)
	b.view.set(&memberlist.Node{Name: "a", Addr: []byte{127, 0, 0, 1}, Port: 1}, MemberAlive, time.Now())
	for _, sb := range publish(t, a, NodeLoad{}, agentsFor("a", 200, 1)) {
		delegate{b}.NotifyMsg(sb.raw)
	}
	if n := len(b.table.agentsOf("a")); n != 200 {
		t.Fatalf("%d agents", n)
	}
	small := publish(t, a, NodeLoad{}, agentsFor("a", 3, 1))
	if len(small) != 1 {
		t.Fatalf("3 agents in %d parts", len(small))
	}
	delegate{b}.NotifyMsg(small[0].raw)
	if n := len(b.table.agentsOf("a")); n != 3 {
		t.Fatalf("after shrinking: %d agents, want 3", n)
	}
}

func TestSignatureAlgorithms(t *testing.T) {
	for _, ed := range []bool{true, false} {
		s := newSigner(t, ed)
		sb, err := encodeMessage(s, &meshnodev1.GossipLoadBatch{Node: "x", Seq: 2, LayoutSeq: 1, Parts: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !verify(s.Public(), sb) {
			t.Fatalf("ed25519=%v: does not verify", ed)
		}
		other := newSigner(t, ed)
		if verify(other.Public(), sb) {
			t.Fatalf("ed25519=%v: verifies under another key", ed)
		}
		if verify(newSigner(t, !ed).Public(), sb) {
			t.Fatalf("ed25519=%v: verifies under another algorithm", ed)
		}
		sb.body = append(bytes.Clone(sb.body), 0)
		if verify(s.Public(), sb) {
			t.Fatalf("ed25519=%v: altered body verifies", ed)
		}
	}
	var _ crypto.Signer = newSigner(t, true)
}

func TestStateRoundTrip(t *testing.T) {
	keys := newKeyring()
	a, b := bare(t, "a", keys), bare(t, "b", keys)
	b.view.set(&memberlist.Node{Name: "a", Addr: []byte{127, 0, 0, 1}, Port: 1}, MemberAlive, time.Now())
	for _, sb := range publish(t, a, NodeLoad{}, agentsFor("a", 100, 4)) {
		a.table.apply(sb, time.Now())
	}
	delegate{b}.MergeRemoteState(delegate{a}.LocalState(false), false)
	if n := len(b.table.agentsOf("a")); n != 100 {
		t.Fatalf("push/pull carried %d of 100 agents", n)
	}
	delegate{b}.MergeRemoteState([]byte{9, 9}, false)
	if b.Stats().Undecodable != 1 {
		t.Fatal("bad state not counted")
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := NodeMeta{Role: RoleServer, QUICAddr: "10.0.0.1:7946", Version: "v1.2.3", SPIFFEID: "spiffe://td/node/n1"}
	b := encodeMeta(m)
	if len(b) > memberlist.MetaMaxSize {
		t.Fatalf("meta is %d bytes", len(b))
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := decodeMeta([]byte{0xff}); err == nil {
		t.Fatal("garbage meta decoded")
	}
	g := &Gossip{}
	if err := (aliveDelegate{g}).NotifyAlive(&memberlist.Node{Name: "n2", Meta: b}); err == nil {
		t.Fatal("meta with another node's SPIFFE id admitted")
	}
	if err := (aliveDelegate{g}).NotifyAlive(&memberlist.Node{Name: "n1", Meta: b}); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := LocalConfig()
	ok.Name, ok.Signer, ok.Keys = "n", newSigner(t, false), newKeyring()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	zero := Config{Name: "n", Signer: ok.Signer, Keys: ok.Keys}
	if err := zero.Validate(); err != nil {
		t.Fatalf("zero values must mean defaults: %v", err)
	}
	cases := map[string]func(*Config){
		"Name":               func(c *Config) { c.Name = "" },
		"Signer is":          func(c *Config) { c.Signer = nil },
		"Keys":               func(c *Config) { c.Keys = nil },
		"ProbeTimeout":       func(c *Config) { c.ProbeTimeout = c.ProbeInterval },
		"MaxMessageBytes":    func(c *Config) { c.MaxMessageBytes = 100 },
		"PacketSize":         func(c *Config) { c.PacketSize = 1000 },
		"JoinBackoffMin":     func(c *Config) { c.JoinBackoffMin = time.Hour },
		"LoadMinInterval":    func(c *Config) { c.LoadMinInterval = time.Hour },
		"LoadRetransmitMult": func(c *Config) { c.LoadRetransmitMult = -1 },
		"Meta":               func(c *Config) { c.Meta.Version = strings.Repeat("v", 100) },
	}
	for field, mod := range cases {
		c := ok
		mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %v does not name the field", field, err)
		}
	}
}

func TestMemberlistLogLines(t *testing.T) {
	cases := []struct {
		in    string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5", slog.LevelDebug, "Stream connection from=1.2.3.4:5"},
		{"[INFO] memberlist: Marking n2 as failed", slog.LevelInfo, "Marking n2 as failed"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: Failed to send ping", slog.LevelError, "Failed to send ping"},
		{"[ERROR] memberlist: x", slog.LevelError, "x"},
		{"no tag at all", slog.LevelInfo, "no tag at all"},
	}
	for _, c := range cases {
		level, msg := parseMemberlistLine(c.in)
		if level != c.level || msg != c.msg {
			t.Errorf("%q -> %v %q", c.in, level, msg)
		}
	}
	var buf bytes.Buffer
	l := newMemberlistLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	l.Printf("[DEBUG] memberlist: hidden")
	l.Printf("[ERR] memberlist: shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "level=ERROR msg=shown component=memberlist") {
		t.Fatalf("adapter output: %q", out)
	}
}

func TestEventsNeverBlock(t *testing.T) {
	var dropped = new(counters)
	h := newHub(3, &dropped.eventsDropped)
	defer h.close()
	ch, cancel := h.subscribe()
	for i := range 10 {
		h.publish(Event{Type: EventLoad, Seq: uint64(i)})
	}
	h.publish(Event{Type: EventFail, Member: Member{Name: "x"}}) // never dropped
	if got := dropped.eventsDropped.Load(); got != 7 {
		t.Fatalf("dropped %d load events, want 7", got)
	}
	var got []EventType
	for range 4 {
		got = append(got, (<-ch).Type)
	}
	if got[3] != EventFail {
		t.Fatalf("events %v: membership event lost", got)
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after cancel")
	}
}

func FuzzDecodeMessage(f *testing.F) {
	s := newSigner(f, true)
	sb, _ := encodeMessage(s, &meshnodev1.GossipLoadBatch{
		Node: "n1", Seq: 5, LayoutSeq: 4, Part: 1, Parts: 2, NodeLoad: &meshnodev1.GossipNodeLoad{InFlight: 3},
		Agents: []*meshnodev1.GossipAgentLoad{{AgentId: "a1", InFlight: 2, SuccessPpm: 999}},
	})
	f.Add(sb.raw)
	f.Add([]byte{msgLoad})
	f.Add([]byte{stateV1, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeMessage(b, 1024)
		if err == nil {
			if len(b) > 1025 || d.batch.GetPart() >= d.batch.GetParts() || d.batch.GetLayoutSeq() > d.batch.GetSeq() {
				t.Fatalf("accepted an invalid message: %x", b)
			}
			verify(s.Public(), d) // must not panic
			var env meshnodev1.GossipSignedBatch
			if proto.Unmarshal(d.raw[1:], &env) != nil {
				t.Fatal("raw does not re-decode")
			}
		}
		if _, _, err := decodeState(b, 1<<16, 1024); err == nil && (len(b) == 0 || b[0] != stateV1) {
			t.Fatal("state accepted without its version byte")
		}
		decodeMeta(b)
	})
}

// A status change is broadcast within statusMinInterval; a load change
// waits out LoadMinInterval.
func TestStatusChangeSkipsCoalescing(t *testing.T) {
	g := bare(t, "n1", newKeyring())
	g.pub.cfg.LoadMinInterval = time.Second
	ready := AgentLoad{AgentID: "n1/a", Capacity: 10, Status: StatusReady}
	t0 := time.Now()
	if _, err := g.pub.set(NodeLoad{}, []AgentLoad{ready}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := g.pub.due(t0); !ok {
		t.Fatal("the first table is not due at once")
	}
	if _, err := g.pub.flush(t0); err != nil {
		t.Fatal(err)
	}

	busy := ready
	busy.InFlight = 9
	if send, _ := g.pub.set(NodeLoad{}, []AgentLoad{busy}); !send {
		t.Fatal("a load change of 90% of capacity is not significant")
	}
	if ok, wait := g.pub.due(t0.Add(time.Millisecond)); ok || wait < 900*time.Millisecond {
		t.Fatalf("a load change is due=%v after %v, want to wait out LoadMinInterval", ok, wait)
	}

	gone := busy
	gone.Status = StatusUnknown
	if _, err := g.pub.set(NodeLoad{}, []AgentLoad{gone}); err != nil {
		t.Fatal(err)
	}
	if ok, wait := g.pub.due(t0.Add(time.Millisecond)); ok || wait > statusMinInterval {
		t.Fatalf("a status change is due=%v, wait %v; want at most %v", ok, wait, statusMinInterval)
	}
	if ok, _ := g.pub.due(t0.Add(statusMinInterval)); !ok {
		t.Fatal("a status change is not due after statusMinInterval")
	}
	if _, err := g.pub.flush(t0.Add(statusMinInterval)); err != nil {
		t.Fatal(err)
	}

	if _, err := g.pub.set(NodeLoad{}, nil); err != nil { // the agent leaves
		t.Fatal(err)
	}
	if ok, wait := g.pub.due(t0.Add(statusMinInterval + time.Millisecond)); ok || wait > statusMinInterval {
		t.Fatalf("a removed agent is due=%v, wait %v; want at most %v", ok, wait, statusMinInterval)
	}
}

// A message that only repeats what the receiver holds is relayed on the
// refresh queue; one with news (first sight, a changed agent, a changed node
// load) on the main queue, which GetBroadcasts drains first.
func TestRefreshesYieldToNews(t *testing.T) {
	keys := newKeyring()
	origin, relay := bare(t, "n1", keys), bare(t, "n2", keys)
	relay.refreshes = &memberlist.TransmitLimitedQueue{RetransmitMult: 1, NumNodes: func() int { return 3 }}
	agents := agentsFor("n1", 2, 0)
	queued := func() (news, refreshes int) { return relay.queue.NumQueued(), relay.refreshes.NumQueued() }
	deliver := func(msgs []*signedBatch) {
		for _, sb := range msgs {
			relay.receive(sb)
		}
	}

	deliver(publish(t, origin, NodeLoad{Status: StatusReady}, agents))
	if n, r := queued(); n != 1 || r != 0 {
		t.Fatalf("first sight: %d news, %d refreshes queued; want 1, 0", n, r)
	}
	relay.queue.Prune(0)

	origin.pub.markAll()
	refresh, err := origin.pub.flush(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	deliver(refresh)
	if n, r := queued(); n != 0 || r != 1 {
		t.Fatalf("a refresh: %d news, %d refreshes queued; want 0, 1", n, r)
	}

	agents[1].Status = StatusDraining
	deliver(publish(t, origin, NodeLoad{Status: StatusReady}, agents))
	if n, _ := queued(); n != 1 {
		t.Fatalf("a changed agent: %d news queued, want 1", n)
	}
	relay.queue.Prune(0)
	last := publish(t, origin, NodeLoad{Status: StatusDraining}, agents)
	deliver(last)
	if n, _ := queued(); n != 1 {
		t.Fatalf("a changed node load: %d news queued, want 1", n)
	}

	// News goes first; a refresh fills what room is left.
	d := delegate{relay}
	newsMsg := last[0].raw
	if got := d.GetBroadcasts(2, len(newsMsg)+2); len(got) != 1 || !bytes.Equal(got[0], newsMsg) {
		t.Fatalf("room for one message: got %d, want the news", len(got))
	}
	if got := d.GetBroadcasts(2, 4096); len(got) != 2 {
		t.Fatalf("GetBroadcasts returned %d messages, want the news and the refresh", len(got))
	}
}
