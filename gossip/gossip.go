package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip is one node's membership and load gossip. Create it with New, then
// Join; stop it with Close (graceful leave, then shutdown).
type Gossip struct {
	cfg   Config
	log   *slog.Logger
	ml    *memberlist.Memberlist
	trans *countingTransport
	// queue carries messages with news (a changed load or status); refreshes
	// carries those that only repeat what receivers hold, sent with what
	// room queue leaves in a packet and relayed fewer times. At 100 nodes
	// the 15 s refreshes, relayed as often as news, filled most of every
	// gossip packet and held real changes back by up to seconds.
	queue     *memberlist.TransmitLimitedQueue
	refreshes *memberlist.TransmitLimitedQueue

	view     *view
	table    *table
	pub      *publisher
	hub      *hub
	counters counters

	self     atomic.Pointer[string] // our advertised address
	conflict atomic.Pointer[error]  // set when a join found our name taken

	joinAttempts atomic.Uint64

	kick      chan struct{}
	stop      chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, starts memberlist on the transport and the background
// loops. The node is alone until Join.
func New(cfg Config) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := &Gossip{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "gossip"),
		view:  newView(),
		table: newTable(),
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
	}
	g.pub = newPublisher(cfg, cfg.Clock.Now())
	g.hub = newHub(cfg.EventBuffer, &g.counters.eventsDropped)

	mc := cfg.memberlistConfig()
	mc.Logger = newMemberlistLogger(cfg.Logger)
	t := cfg.Transport
	if t == nil {
		nt, err := newNetTransport(cfg, mc.Logger)
		if err != nil {
			return nil, fmt.Errorf("gossip: starting UDP/TCP transport on %s:%d for node %s: %w", cfg.BindAddr, cfg.BindPort, cfg.Name, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = cfg.BindAddr, nt.GetAutoBindPort()
		t = nt
	}
	g.trans = newCountingTransport(t, &g.counters, g.log)
	mc.Transport = g.trans
	g.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: cfg.LoadRetransmitMult, NumNodes: g.numNodes}
	g.refreshes = &memberlist.TransmitLimitedQueue{RetransmitMult: refreshRetransmitMult, NumNodes: g.numNodes}
	mc.Delegate = delegate{g}
	mc.Events = eventDelegate{g}
	mc.Conflict = conflictDelegate{g}
	mc.Alive = aliveDelegate{g}
	mc.Merge = mergeDelegate{g}

	ml, err := memberlist.Create(mc)
	if err != nil {
		g.trans.Shutdown()
		return nil, fmt.Errorf("gossip: starting memberlist for node %s: %w", cfg.Name, err)
	}
	g.ml = ml
	addr := ml.LocalNode().Address()
	g.self.Store(&addr)
	g.wg.Add(1)
	go g.loop()
	return g, nil
}

// newNetTransport starts memberlist's UDP/TCP transport. With port 0 the
// TCP listener picks the port and UDP may find it taken: retry, as
// memberlist.Create does for its own transport.
func newNetTransport(cfg Config, logger *log.Logger) (*memberlist.NetTransport, error) {
	var err error
	for range 10 {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{cfg.BindAddr}, BindPort: cfg.BindPort, Logger: logger,
		})
		if err == nil || cfg.BindPort != 0 {
			return nt, err
		}
	}
	return nil, err
}

func (g *Gossip) numNodes() int {
	if g.ml == nil {
		return 1
	}
	return g.ml.NumMembers()
}

func (g *Gossip) localAddr() string {
	if p := g.self.Load(); p != nil {
		return *p
	}
	return ""
}

// Addr is the address other nodes reach this node's gossip at (a seed address).
func (g *Gossip) Addr() string { return g.localAddr() }

// Join contacts seeds until one answers, waiting with exponential backoff
// and jitter between rounds and logging each failure, so seeds that are not
// up yet are fine. It returns the number of seeds that answered, or ctx's
// error, or ErrNameConflict (not retried: another live node has our name).
func (g *Gossip) Join(ctx context.Context, seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, ErrNoSeeds
	}
	wait := g.cfg.JoinBackoffMin
	for attempt := 1; ; attempt++ {
		select {
		case <-g.stop:
			return 0, ErrClosed
		default:
		}
		g.conflict.Store(nil)
		g.joinAttempts.Add(1)
		n, err := g.ml.Join(seeds)
		if c := g.conflict.Load(); c != nil {
			return 0, fmt.Errorf("gossip: joining %v as %s: %w; choose a unique node name or stop the other node", seeds, g.cfg.Name, *c)
		}
		if n > 0 {
			g.log.Info("joined cluster", "seeds_answered", n, "members", g.ml.NumMembers(), "attempt", attempt)
			return n, nil
		}
		g.log.Warn("join failed, retrying", "seeds", seeds, "attempt", attempt, "retry_in", wait, "err", flatten(err))
		// Full jitter on the upper half keeps restarted fleets from
		// hammering the seeds in lockstep.
		d := wait/2 + rand.N(wait/2+1)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("gossip: joining %v as %s after %d attempts: %w (last error: %s)", seeds, g.cfg.Name, attempt, ctx.Err(), flatten(err))
		case <-g.stop:
			return 0, ErrClosed
		case <-g.cfg.Clock.After(d):
		}
		wait = min(2*wait, g.cfg.JoinBackoffMax)
	}
}

// flatten renders memberlist's multi-line multierror on one line.
func flatten(err error) string {
	if err == nil {
		return "no seed answered"
	}
	s := strings.TrimSpace(err.Error())
	s = strings.TrimPrefix(s, "1 error occurred:")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n\t*", ";")), " ")
}

// Leave tells the cluster this node is leaving and waits up to timeout for
// the message to spread. Call Shutdown (or Close) afterwards.
func (g *Gossip) Leave(timeout time.Duration) error {
	start := g.cfg.Clock.Now()
	g.pub.mu.Lock()
	g.cfg.Meta.Leaving = true
	g.pub.mu.Unlock()
	// Spread the leaving flag first (UpdateNode waits until it is sent), so
	// peers report a leave, not a failure. Half the budget at most.
	if err := g.ml.UpdateNode(timeout / 2); err != nil {
		g.log.Warn("could not announce leaving before the leave message", "err", err)
	}
	if err := g.ml.Leave(max(timeout-g.cfg.Clock.Now().Sub(start), timeout/2)); err != nil {
		return fmt.Errorf("gossip: leaving as %s: %w", g.cfg.Name, err)
	}
	return nil
}

// Shutdown stops gossip without a leave message (other nodes will declare
// this node dead), stops every goroutine and closes subscriptions.
func (g *Gossip) Shutdown() error {
	g.closeOnce.Do(func() {
		g.stopOnce.Do(func() { close(g.stop) })
		g.wg.Wait()
		if err := g.ml.Shutdown(); err != nil {
			g.closeErr = fmt.Errorf("gossip: shutting down node %s: %w", g.cfg.Name, err)
		}
		g.hub.close()
	})
	return g.closeErr
}

// Close leaves gracefully (bounded by Config.LeaveTimeout) and shuts down.
func (g *Gossip) Close() error {
	leaveErr := g.Leave(g.cfg.LeaveTimeout)
	if leaveErr != nil {
		g.log.Warn("graceful leave failed; shutting down anyway", "err", leaveErr)
	}
	return g.Shutdown()
}

// UpdateMeta changes this node's advertised metadata and spreads it.
func (g *Gossip) UpdateMeta(m NodeMeta) error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("gossip: metadata for %s: %w", g.cfg.Name, err)
	}
	g.pub.mu.Lock()
	g.cfg.Meta = m
	g.pub.mu.Unlock()
	if err := g.ml.UpdateNode(g.cfg.StreamTimeout); err != nil {
		return fmt.Errorf("gossip: announcing metadata of %s: %w", g.cfg.Name, err)
	}
	return nil
}

// SetLocalLoad replaces this node's load table: the node's own load and that
// of every agent it serves (an agent missing from agents is removed). Changes
// are broadcast when significant (see Config), coalesced over
// LoadMinInterval (status changes go out within 10 ms); everything is re-sent every LoadRefreshInterval.
func (g *Gossip) SetLocalLoad(node NodeLoad, agents []AgentLoad) error {
	send, err := g.pub.set(node, agents)
	if err != nil {
		return fmt.Errorf("gossip: load of node %s: %w", g.cfg.Name, err)
	}
	if send {
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// loop owns the periodic work: load flushes, refreshes and pruning.
func (g *Gossip) loop() {
	defer g.wg.Done()
	refresh := g.cfg.Clock.After(g.cfg.LoadRefreshInterval)
	var flushAt <-chan time.Time
	for {
		select {
		case <-g.stop:
			return
		case <-g.kick:
		case <-flushAt:
			flushAt = nil
		case <-refresh:
			refresh = g.cfg.Clock.After(g.cfg.LoadRefreshInterval)
			g.pub.markAll()
			g.maintain()
		}
		ok, wait := g.pub.due(g.cfg.Clock.Now())
		if ok {
			g.flush()
		} else if wait > 0 && flushAt == nil {
			flushAt = g.cfg.Clock.After(wait)
		}
	}
}

func (g *Gossip) flush() {
	now := g.cfg.Clock.Now()
	msgs, err := g.pub.flush(now)
	if err != nil {
		g.log.Error("signing load update failed", "err", err)
	}
	for _, sb := range msgs {
		changed, news, _ := g.table.apply(sb, now)
		g.counters.broadcasts.Add(1)
		g.enqueue(sb, news)
		g.loadEvent(g.cfg.Name, changed, sb.batch.GetSeq(), now)
	}
}

// maintain prunes departed members and orphaned load tables.
func (g *Gossip) maintain() {
	now := g.cfg.Clock.Now()
	for _, name := range g.view.prune(now.Add(-g.cfg.DepartedRetention)) {
		g.table.forgetFloor(name)
	}
	g.table.sweep(g.view.known, now.Add(-2*g.cfg.LoadRefreshInterval))
	// Bound the relay queues: old messages beyond this are superseded anyway.
	for _, q := range []*memberlist.TransmitLimitedQueue{g.queue, g.refreshes} {
		if q.NumQueued() > 4*maxParts {
			q.Prune(4 * maxParts)
		}
	}
}

// receive handles one load message from gossip or push/pull.
func (g *Gossip) receive(sb *signedBatch) {
	g.counters.received.Add(1)
	name := sb.batch.GetNode()
	if name == g.cfg.Name {
		// Our own message coming back: we hold fresher state.
		g.counters.stale.Add(1)
		return
	}
	if g.view.departed(name) {
		g.counters.departed.Add(1)
		return
	}
	switch g.table.check(sb) {
	case stale:
		g.counters.stale.Add(1)
		return
	case belowFloor:
		g.counters.departed.Add(1)
		return
	}
	pub, ok := g.cfg.Keys.NodePublicKey(name)
	if !ok {
		g.counters.unknownKey.Add(1)
		g.log.Debug("dropped load message: no key for node", "from_node", name)
		return
	}
	if !verify(pub, sb) {
		g.counters.badSig.Add(1)
		g.log.Warn("dropped load message with a bad signature", "claimed_node", name)
		return
	}
	now := g.cfg.Clock.Now()
	changed, news, ok := g.table.apply(sb, now)
	if !ok {
		g.counters.stale.Add(1)
		return
	}
	g.counters.accepted.Add(1)
	g.enqueue(sb, news) // relay, byte for byte
	g.loadEvent(name, changed, sb.batch.GetSeq(), now)
}

func (g *Gossip) loadEvent(name string, changed []string, seq uint64, now time.Time) {
	m, ok := g.view.get(name)
	if !ok {
		m = Member{Name: name}
	}
	g.fillLoad(&m)
	g.hub.publish(Event{Type: EventLoad, Member: m, Agents: changed, Seq: seq, At: now})
}

func (g *Gossip) fillLoad(m *Member) {
	m.Load, m.LoadSeq, m.Agents = g.table.nodeSummary(m.Name)
}

// Members returns every known node: alive, suspect, and recently dead or left.
func (g *Gossip) Members() []Member {
	suspect := make(map[string]bool)
	for _, n := range g.ml.Members() {
		if n.State == memberlist.StateSuspect {
			suspect[n.Name] = true
		}
	}
	out := g.view.list()
	for i := range out {
		if out[i].Status == MemberAlive && suspect[out[i].Name] {
			out[i].Status = MemberSuspect
		}
		g.fillLoad(&out[i])
	}
	return out
}

// Member returns one node as the local view sees it.
func (g *Gossip) Member(name string) (Member, bool) {
	m, ok := g.view.get(name)
	if ok {
		g.fillLoad(&m)
	}
	return m, ok
}

// NodeAlive reports whether gossip considers the node alive (or merely
// suspect). False as soon as failure detection declares it dead.
func (g *Gossip) NodeAlive(name string) bool { return g.view.alive(name) }

// Load returns the gossiped load of an agent, only from a live node and, when
// Config.Owners knows the agent, only from its owning node.
func (g *Gossip) Load(agentID string) (AgentLoad, bool) {
	owner := ""
	if g.cfg.Owners != nil {
		if n, ok := g.cfg.Owners.AgentNode(agentID); ok {
			owner = n
		}
	}
	return g.LoadOf(agentID, owner)
}

// LoadOf is Load for a caller that already knows the agent's owning node
// (from the registry record it holds): no Owners lookup. An empty owner
// takes the freshest entry from any live node.
func (g *Gossip) LoadOf(agentID, owner string) (AgentLoad, bool) {
	a, ok := g.table.agent(agentID, owner, g.view.alive)
	if !ok && owner != "" {
		if _, other := g.table.agent(agentID, "", g.view.alive); other {
			g.counters.foreign.Add(1)
		}
	}
	return a, ok
}

// NodeAgents returns the agent entries a live node publishes, sorted by id.
func (g *Gossip) NodeAgents(node string) []AgentLoad {
	if !g.view.alive(node) {
		return nil
	}
	return g.table.agentsOf(node)
}

// Subscribe returns a channel of view changes and a cancel func that ends the
// subscription and closes the channel. Membership events are never dropped;
// load events beyond Config.EventBuffer undelivered ones are (Stats.EventsDropped).
func (g *Gossip) Subscribe() (<-chan Event, func()) { return g.hub.subscribe() }

// Stats returns the counters.
func (g *Gossip) Stats() Stats { return g.counters.snapshot() }

// NumAlive is the number of live (alive or suspect) nodes, this one included.
func (g *Gossip) NumAlive() int { return g.ml.NumMembers() }

// delegate implements memberlist.Delegate. memberlist calls it from its
// packet handler and gossip goroutines: nothing here blocks.
type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(limit int) []byte {
	d.g.pub.mu.Lock()
	m := d.g.cfg.Meta
	d.g.pub.mu.Unlock()
	b := encodeMeta(m)
	if len(b) > limit {
		d.g.log.Error("node metadata too large, advertising none", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d delegate) NotifyMsg(b []byte) {
	sb, err := decodeMessage(b, d.g.cfg.MaxMessageBytes)
	if err != nil {
		d.g.countBad(err)
		return
	}
	d.g.receive(sb)
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	msgs := d.g.queue.GetBroadcasts(overhead, limit)
	for _, m := range msgs {
		limit -= overhead + len(m)
	}
	return append(msgs, d.g.refreshes.GetBroadcasts(overhead, limit)...)
}

// enqueue queues a signed message for gossip: news first, refreshes with
// the room left.
func (g *Gossip) enqueue(sb *signedBatch, news bool) {
	if news {
		g.queue.QueueBroadcast(newBroadcast(sb))
		return
	}
	g.refreshes.QueueBroadcast(newBroadcast(sb))
}

// refreshRetransmitMult: each node relays a refresh ceil(log10(N+1)) times
// (3 at N=100), so nearly every node still hears it; the few that miss one
// hold the previous, identical values, and push/pull repairs them.
const refreshRetransmitMult = 1

func (d delegate) LocalState(join bool) []byte {
	return encodeState(d.g.table.rawMessages())
}

func (d delegate) MergeRemoteState(buf []byte, join bool) {
	batches, bad, err := decodeState(buf, d.g.cfg.MaxStateBytes, d.g.cfg.MaxMessageBytes)
	if err != nil {
		d.g.countBad(err)
		return
	}
	d.g.counters.undecodable.Add(uint64(bad))
	for _, sb := range batches {
		d.g.receive(sb)
	}
}

func (g *Gossip) countBad(err error) {
	if errors.Is(err, errOversized) {
		g.counters.oversized.Add(1)
	} else {
		g.counters.undecodable.Add(1)
	}
	g.log.Debug("dropped gossip message", "err", err)
}

// broadcast is one signed load message in the transmit queue. Its name is the
// origin node and part, so a newer message for a part replaces an older one
// still waiting to be sent.
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func newBroadcast(sb *signedBatch) *broadcast {
	b := sb.batch
	return &broadcast{name: b.GetNode() + "/" + strconv.FormatUint(uint64(b.GetPart()), 10), msg: sb.raw}
}

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}
