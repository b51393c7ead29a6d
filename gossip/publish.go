package gossip

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// publisher owns this node's load table: it decides when a change is worth
// broadcasting, splits the table into parts under the message size bound,
// and signs each part with a fresh sequence number.
type publisher struct {
	cfg  Config
	name string

	mu        sync.Mutex
	have      bool // SetLocalLoad was called at least once
	seq       uint64
	layoutSeq uint64
	parts     uint32
	node      NodeLoad
	agents    map[string]AgentLoad
	sentNode  NodeLoad
	sent      map[string]AgentLoad // last broadcast value per agent
	dirty     map[uint32]bool
	urgent    bool // a dirty part holds a status change or an agent coming or going
	lastFlush time.Time
	budget    int // bytes available for agents in one message
}

func newPublisher(cfg Config, now time.Time) *publisher {
	p := &publisher{
		cfg:  cfg,
		name: cfg.Name,
		// Start at the wall clock so a restarted node's messages are newer
		// than everything its previous life sent (as long as it sent fewer
		// than 1e9 per second and the clock does not jump back).
		seq:    uint64(now.UnixNano()),
		agents: make(map[string]AgentLoad),
		sent:   make(map[string]AgentLoad),
		dirty:  make(map[uint32]bool),
	}
	// Overhead of one message without agents, with maximal varints.
	probe := &meshnodev1.GossipLoadBatch{
		Node: cfg.Name, Seq: math.MaxUint64, LayoutSeq: math.MaxUint64, Part: maxParts, Parts: maxParts,
		IssuedUnixMs: math.MaxInt64,
		NodeLoad: &meshnodev1.GossipNodeLoad{InFlight: math.MaxUint32, Capacity: math.MaxUint32,
			EwmaLatencyUs: math.MaxUint32, SuccessPpm: ppm, Status: 3},
	}
	overhead := proto.Size(probe) + 1 /* kind */ + 2*3 /* two length-delimited fields */ + 4 /* batch len */ + sigSize(cfg.Signer.Public())
	p.budget = cfg.MaxMessageBytes - overhead
	return p
}

// agentWireSize is an agent's encoded size inside a batch (with its tag and
// length prefix).
func agentWireSize(a AgentLoad) int {
	n := proto.Size(agentLoadToWire(a))
	return n + 1 + varintLen(uint64(n))
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func partOf(id string, parts uint32) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32() % parts
}

// set replaces the local table and marks the parts that changed
// significantly. It reports whether anything needs sending.
func (p *publisher) set(node NodeLoad, agents []AgentLoad) (bool, error) {
	next := make(map[string]AgentLoad, len(agents))
	for _, a := range agents {
		if a.AgentID == "" || len(a.AgentID) > maxAgentIDLen {
			return false, fmt.Errorf("agent id %q must be 1 to %d bytes", a.AgentID, maxAgentIDLen)
		}
		if _, dup := next[a.AgentID]; dup {
			return false, fmt.Errorf("agent %s listed twice", a.AgentID)
		}
		a.Node, a.Seq = "", 0
		next[a.AgentID] = a
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	first := !p.have
	p.have, p.node, p.agents = true, node, next
	if first || !p.layoutFits() {
		if err := p.relayoutLocked(); err != nil {
			return false, err
		}
		p.urgent = true
		return true, nil
	}
	for id, a := range next {
		if s, ok := p.sent[id]; !ok || p.significant(s, a) {
			p.dirty[partOf(id, p.parts)] = true
			p.urgent = p.urgent || !ok || s.Status != a.Status
		}
	}
	for id := range p.sent {
		if _, ok := next[id]; !ok {
			p.dirty[partOf(id, p.parts)] = true
			p.urgent = true
		}
	}
	if p.significantNode(p.sentNode, node) && len(p.dirty) == 0 {
		p.dirty[0] = true // the node's own load rides on every part
		p.urgent = p.urgent || p.sentNode.Status != node.Status
	}
	return len(p.dirty) > 0, nil
}

// layoutFits reports whether the current split still holds every part under
// the budget and is not needlessly fine (more than twice the parts needed).
func (p *publisher) layoutFits() bool {
	if p.parts == 0 {
		return false
	}
	sizes := make([]int, p.parts)
	total := 0
	for id, a := range p.agents {
		s := agentWireSize(a)
		sizes[partOf(id, p.parts)] += s
		total += s
	}
	for _, s := range sizes {
		if s > p.budget {
			return false
		}
	}
	need := max(1, (total+p.budget-1)/p.budget)
	return int(p.parts) <= 2*need+1
}

// relayoutLocked picks the smallest split that fits and marks every part dirty.
func (p *publisher) relayoutLocked() error {
	total := 0
	for _, a := range p.agents {
		total += agentWireSize(a)
	}
	for k := max(1, (total+p.budget-1)/p.budget); k <= maxParts; k++ {
		p.parts = uint32(k)
		if p.layoutFits() {
			p.layoutSeq = p.seq + 1
			clear(p.dirty)
			for i := range p.parts {
				p.dirty[i] = true
			}
			return nil
		}
	}
	return fmt.Errorf("%d agents do not fit in %d messages of %d bytes", len(p.agents), maxParts, p.cfg.MaxMessageBytes)
}

func (p *publisher) significant(old, cur AgentLoad) bool {
	if old.Status != cur.Status || old.Capacity != cur.Capacity {
		return true
	}
	return p.changed(old.InFlight, cur.InFlight, cur.Capacity, old.EWMALatency, cur.EWMALatency, old.SuccessRate, cur.SuccessRate)
}

func (p *publisher) significantNode(old, cur NodeLoad) bool {
	if old.Status != cur.Status || old.Capacity != cur.Capacity {
		return true
	}
	return p.changed(old.InFlight, cur.InFlight, cur.Capacity, old.EWMALatency, cur.EWMALatency, old.SuccessRate, cur.SuccessRate)
}

func (p *publisher) changed(oldIn, curIn, capacity uint32, oldLat, curLat time.Duration, oldRate, curRate float64) bool {
	step := max(1, math.Ceil(p.cfg.InFlightDelta*float64(capacity)))
	if math.Abs(float64(curIn)-float64(oldIn)) >= step {
		return true
	}
	if oldLat != curLat {
		base := max(float64(oldLat), float64(time.Microsecond))
		if math.Abs(float64(curLat-oldLat))/base >= p.cfg.LatencyDelta {
			return true
		}
	}
	return math.Abs(curRate-oldRate) >= p.cfg.SuccessRateDelta
}

// markAll marks every part dirty (periodic refresh).
func (p *publisher) markAll() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.have {
		return false
	}
	for i := range p.parts {
		p.dirty[i] = true
	}
	return true
}

// due says whether a flush may happen now, or how long to wait.
func (p *publisher) due(now time.Time) (bool, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.dirty) == 0 {
		return false, 0
	}
	spacing := p.cfg.LoadMinInterval
	if p.urgent {
		// Readiness is what routing and voter selection act on: an agent
		// that starts or stops serving must not wait out the load
		// coalescing window, only a short spacing against a flapping one.
		spacing = min(spacing, statusMinInterval)
	}
	if wait := p.lastFlush.Add(spacing).Sub(now); wait > 0 {
		return false, wait
	}
	return true, 0
}

// statusMinInterval is the least time between two broadcasts when one
// carries a status change.
const statusMinInterval = 10 * time.Millisecond

// flush signs one message per dirty part.
func (p *publisher) flush(now time.Time) ([]*signedBatch, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	parts := make([]uint32, 0, len(p.dirty))
	for i := range p.dirty {
		parts = append(parts, i)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	byPart := make(map[uint32][]AgentLoad)
	for id, a := range p.agents {
		i := partOf(id, p.parts)
		if p.dirty[i] {
			byPart[i] = append(byPart[i], a)
		}
	}
	out := make([]*signedBatch, 0, len(parts))
	for _, i := range parts {
		agents := byPart[i]
		sort.Slice(agents, func(x, y int) bool { return agents[x].AgentID < agents[y].AgentID })
		p.seq++
		b := &meshnodev1.GossipLoadBatch{
			Node: p.name, Seq: p.seq, LayoutSeq: p.layoutSeq, Part: i, Parts: p.parts,
			IssuedUnixMs: now.UnixMilli(), NodeLoad: nodeLoadToWire(p.node),
		}
		for _, a := range agents {
			b.Agents = append(b.Agents, agentLoadToWire(a))
		}
		sb, err := encodeMessage(p.cfg.Signer, b)
		if err != nil {
			return out, err
		}
		out = append(out, sb)
		for _, a := range agents {
			p.sent[a.AgentID] = a
		}
		delete(p.dirty, i)
	}
	for id := range p.sent {
		if _, ok := p.agents[id]; !ok {
			delete(p.sent, id)
		}
	}
	p.sentNode = p.node
	p.urgent = false
	p.lastFlush = now
	return out, nil
}
