package traffic

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
	"github.com/agentmesh/meshnode/internal/dataplane"
	"google.golang.org/grpc/codes"
)

var _ dataplane.Observer = (*Table)(nil)

// Side says which end of a call an edge was measured at.
type Side int8

const (
	// CallerSide: measured by the caller's node, end to end over every attempt.
	CallerSide Side = iota
	// CalleeSide: measured by the callee's node, the handler's time per attempt.
	CalleeSide
)

func (s Side) String() string {
	if s == CalleeSide {
		return "callee"
	}
	return "caller"
}

// Key is an edge's identity.
type Key struct {
	Caller     string // calling agent id, "" for a call not made for an agent
	Callee     string // agent that answered or was tried last, "" if none was
	Capability string
	Side       Side
}

// Edge is one edge's figures, one Stats per window in Spans order.
type Edge struct {
	Key
	Windows [NumSpans]Stats
}

// DefaultMaxEdges bounds a table: at about 3.3 KiB an edge (measured by
// BenchmarkEdgeMemory), 10,000 edges is 33 MiB at most. A call on an edge past the bound is not tracked and
// is counted in Dropped.
const DefaultMaxEdges = 10000

// Table is a node's traffic matrix. Safe for concurrent use; it starts no
// goroutines (idle edges are swept when a snapshot is taken or the table
// is full).
type Table struct {
	clock   clock.Clock
	max     int
	dropped atomic.Uint64

	mu    sync.RWMutex
	edges map[Key]*edge
}

type edge struct {
	mu    sync.Mutex
	first time.Time
	last  time.Time
	rings [NumSpans]ring
}

// NewTable returns an empty table of at most maxEdges edges (zero means
// DefaultMaxEdges) reading time from c (nil: the system clock).
func NewTable(c clock.Clock, maxEdges int) *Table {
	if maxEdges <= 0 {
		maxEdges = DefaultMaxEdges
	}
	return &Table{clock: clock.OrSystem(c), max: maxEdges, edges: map[Key]*edge{}}
}

// Dropped is how many calls were not tracked because the table was full.
func (t *Table) Dropped() uint64 { return t.dropped.Load() }

// Len is the number of edges tracked.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.edges)
}

// Record adds one call to k's edge.
func (t *Table) Record(k Key, ok bool, latency time.Duration) {
	now := t.clock.Now()
	t.mu.RLock()
	e := t.edges[k]
	t.mu.RUnlock()
	if e == nil {
		if e = t.insert(k, now); e == nil {
			t.dropped.Add(1)
			return
		}
	}
	b := bucketOf(latency)
	ns := now.UnixNano()
	e.mu.Lock()
	e.last = now
	for i := range e.rings {
		e.rings[i].add(ns/int64(Spans[i]/slotsPerSpan), ok, b)
	}
	e.mu.Unlock()
}

func (t *Table) insert(k Key, now time.Time) *edge {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.edges[k]; e != nil {
		return e
	}
	if len(t.edges) >= t.max {
		t.sweepLocked(now)
		if len(t.edges) >= t.max {
			return nil
		}
	}
	e := &edge{first: now}
	t.edges[k] = e
	return e
}

// sweepLocked drops edges idle for longer than the longest window: they
// have nothing left to report.
func (t *Table) sweepLocked(now time.Time) {
	for k, e := range t.edges {
		e.mu.Lock()
		idle := now.Sub(e.last) > Spans[NumSpans-1]
		e.mu.Unlock()
		if idle {
			delete(t.edges, k)
		}
	}
}

// Snapshot returns every edge with calls in its longest window. The table
// lock is held only to list the edges, so calls are not held up while a
// large table is read.
func (t *Table) Snapshot() []Edge {
	now := t.clock.Now()
	type entry struct {
		k Key
		e *edge
	}
	t.mu.RLock()
	all := make([]entry, 0, len(t.edges))
	for k, e := range t.edges {
		all = append(all, entry{k, e})
	}
	t.mu.RUnlock()
	out := make([]Edge, 0, len(all))
	idle := false
	for _, en := range all {
		ed := en.e.read(en.k, now)
		if ed.Windows[NumSpans-1].Requests == 0 {
			idle = true
			continue
		}
		out = append(out, ed)
	}
	if idle {
		t.mu.Lock()
		t.sweepLocked(now)
		t.mu.Unlock()
	}
	return out
}

func (e *edge) read(k Key, now time.Time) Edge {
	out := Edge{Key: k}
	ns := now.UnixNano()
	e.mu.Lock()
	defer e.mu.Unlock()
	age := now.Sub(e.first)
	for i, span := range Spans {
		slotLen := span / slotsPerSpan
		st := &out.Windows[i]
		st.Span = span
		// The window's slots cover the full ones before now's plus the
		// elapsed part of now's, never more than the edge has existed.
		st.Covered = min(span-slotLen+time.Duration(ns%int64(slotLen)), max(age, time.Second))
		e.rings[i].sum(ns/int64(slotLen), st)
	}
	return out
}

// CallMade records a call made from this node.
func (t *Table) CallMade(e dataplane.CallEvent) {
	t.Record(Key{Caller: e.Caller, Callee: e.Callee, Capability: e.Capability, Side: CallerSide}, e.Code == codes.OK, e.Latency)
}

// CallServed records an attempt a local agent handled.
func (t *Table) CallServed(e dataplane.CallEvent) {
	t.Record(Key{Caller: e.Caller, Callee: e.Callee, Capability: e.Capability, Side: CalleeSide}, e.Code == codes.OK, e.Latency)
}

// Serving is not part of the matrix.
func (t *Table) Serving(string, int) {}

// Refused is not part of the matrix: the call reached no agent.
func (t *Table) Refused(dataplane.Refusal) {}
