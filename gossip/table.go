package gossip

import (
	"sort"
	"sync"
	"time"
)

// table is the local copy of every node's signed load table. Each origin
// node's table is split into parts; a part is replaced as a whole by a newer
// message for it. The raw signed messages are kept so push/pull can hand
// them on unchanged.
type table struct {
	mu      sync.Mutex
	origins map[string]*origin
	// floors remembers, for nodes that died or left, the highest sequence
	// number seen, so that their old messages still circulating in relays'
	// queues cannot bring their entries back.
	floors map[string]uint64
}

type origin struct {
	layoutSeq uint64
	parts     uint32
	chunks    map[uint32]*chunk
	node      NodeLoad
	nodeSeq   uint64
	updated   time.Time
}

type chunk struct {
	seq    uint64
	raw    []byte
	agents map[string]AgentLoad
}

func newTable() *table {
	return &table{origins: make(map[string]*origin), floors: make(map[string]uint64)}
}

// freshness of a message relative to what the table holds.
type freshness uint8

const (
	fresh freshness = iota
	stale
	belowFloor
)

func (t *table) check(sb *signedBatch) freshness {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.checkLocked(sb)
}

func (t *table) checkLocked(sb *signedBatch) freshness {
	b := sb.batch
	if f, ok := t.floors[b.GetNode()]; ok && b.GetSeq() <= f {
		return belowFloor
	}
	o := t.origins[b.GetNode()]
	if o == nil || b.GetLayoutSeq() > o.layoutSeq {
		return fresh
	}
	if b.GetLayoutSeq() < o.layoutSeq || b.GetParts() != o.parts {
		return stale
	}
	if c := o.chunks[b.GetPart()]; c != nil && b.GetSeq() <= c.seq {
		return stale
	}
	return fresh
}

// apply stores a verified message if it is still fresh. It returns the ids of
// agents whose entries appeared, changed or disappeared; news, whether the
// message told this table anything beyond new sequence numbers (changed
// agents or a changed node load); and whether it was applied at all.
func (t *table) apply(sb *signedBatch, now time.Time) (changed []string, news, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.checkLocked(sb) != fresh {
		return nil, false, false
	}
	b := sb.batch
	name := b.GetNode()
	o := t.origins[name]
	if o == nil {
		o = &origin{}
		t.origins[name] = o
	}
	if b.GetLayoutSeq() > o.layoutSeq {
		// A new split: every older part is superseded.
		for _, c := range o.chunks {
			for id := range c.agents {
				changed = append(changed, id)
			}
		}
		o.layoutSeq, o.parts, o.chunks = b.GetLayoutSeq(), b.GetParts(), make(map[uint32]*chunk)
	}
	next := &chunk{seq: b.GetSeq(), raw: sb.raw, agents: make(map[string]AgentLoad, len(b.GetAgents()))}
	for _, w := range b.GetAgents() {
		next.agents[w.GetAgentId()] = agentLoadFromWire(w, name, b.GetSeq())
	}
	prev := o.chunks[b.GetPart()]
	changed = append(changed, diffAgents(prev, next)...)
	o.chunks[b.GetPart()] = next
	if b.GetSeq() > o.nodeSeq {
		node := nodeLoadFromWire(b.GetNodeLoad())
		news = o.nodeSeq == 0 || node != o.node
		o.node, o.nodeSeq = node, b.GetSeq()
	}
	o.updated = now
	changed = dedupe(changed)
	return changed, news || len(changed) > 0, true
}

func diffAgents(prev, next *chunk) []string {
	var changed []string
	for id, a := range next.agents {
		if prev == nil {
			changed = append(changed, id)
			continue
		}
		if p, ok := prev.agents[id]; !ok || !sameLoad(p, a) {
			changed = append(changed, id)
		}
	}
	if prev != nil {
		for id := range prev.agents {
			if _, ok := next.agents[id]; !ok {
				changed = append(changed, id)
			}
		}
	}
	return changed
}

func sameLoad(a, b AgentLoad) bool {
	a.Seq, b.Seq = 0, 0
	return a == b
}

func dedupe(ids []string) []string {
	if len(ids) < 2 {
		return ids
	}
	sort.Strings(ids)
	out := ids[:1]
	for _, id := range ids[1:] {
		if id != out[len(out)-1] {
			out = append(out, id)
		}
	}
	return out
}

// drop forgets a node's table (it died or left) and returns its agent ids.
func (t *table) drop(name string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.origins[name]
	if o == nil {
		return nil
	}
	var ids []string
	floor := o.nodeSeq
	for _, c := range o.chunks {
		floor = max(floor, c.seq)
		for id := range c.agents {
			ids = append(ids, id)
		}
	}
	t.floors[name] = max(t.floors[name], floor)
	delete(t.origins, name)
	sort.Strings(ids)
	return ids
}

// forgetFloor drops a departed node's floor once it is no longer needed.
func (t *table) forgetFloor(name string) {
	t.mu.Lock()
	delete(t.floors, name)
	t.mu.Unlock()
}

// agent returns the entry for id. If owner is not empty only that node's
// entry counts; otherwise the freshest entry from a node accepted by alive.
func (t *table) agent(id, owner string, alive func(string) bool) (AgentLoad, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var best AgentLoad
	found := false
	consider := func(name string, o *origin) {
		if !alive(name) {
			return
		}
		for _, c := range o.chunks {
			if a, ok := c.agents[id]; ok && (!found || a.Seq > best.Seq) {
				best, found = a, true
			}
		}
	}
	if owner != "" { // the call path's case: one map lookup, not a scan
		if o := t.origins[owner]; o != nil {
			consider(owner, o)
		}
		return best, found
	}
	for name, o := range t.origins {
		consider(name, o)
	}
	return best, found
}

// nodeSummary returns a node's own load and agent count.
func (t *table) nodeSummary(name string) (NodeLoad, uint64, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.origins[name]
	if o == nil {
		return NodeLoad{}, 0, 0
	}
	n := 0
	for _, c := range o.chunks {
		n += len(c.agents)
	}
	return o.node, o.nodeSeq, n
}

// agentsOf returns a copy of a node's agent entries, sorted by id.
func (t *table) agentsOf(name string) []AgentLoad {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.origins[name]
	if o == nil {
		return nil
	}
	var out []AgentLoad
	for _, c := range o.chunks {
		for _, a := range c.agents {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgentID < out[j].AgentID })
	return out
}

// rawMessages returns every stored signed message (for push/pull).
func (t *table) rawMessages() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out [][]byte
	for _, o := range t.origins {
		for _, c := range o.chunks {
			out = append(out, c.raw)
		}
	}
	return out
}

// sweep drops tables of nodes that known() rejects and that have not been
// updated since before cutoff: entries that arrived for a node whose alive
// message never followed.
func (t *table) sweep(known func(string) bool, cutoff time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, o := range t.origins {
		if !known(name) && o.updated.Before(cutoff) {
			delete(t.origins, name)
		}
	}
}
