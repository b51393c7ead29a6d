package consensus

import (
	"strings"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// dedupTable remembers applied idempotency keys. It is a map plus a FIFO in
// apply order rather than a memdb table: it is written once per command,
// and a radix-tree insert with two indexes cost more than the rest of a
// registration. Expiry walks the FIFO from the oldest entry; batch times
// only grow in practice, so FIFO order is expiry order, and whatever the
// clock does, every replica walks the same FIFO the same way.
//
// Only the FSM goroutine touches it (under state.mu); records are never
// mutated after insert, so a snapshot copies the FIFO's pointers.
type dedupTable struct {
	m     map[string]*meshnodev1.DedupRecord
	fifo  []*meshnodev1.DedupRecord
	start int
	// perOrigin counts live keys by origin, for the per-client quota.
	perOrigin map[string]int
}

func newDedupTable() *dedupTable {
	return &dedupTable{m: map[string]*meshnodev1.DedupRecord{}, perOrigin: map[string]int{}}
}

// dedupKey is where origin's idempotency key is remembered. Keys live in
// one namespace per origin, so no node can answer another's write with a
// result of its own by using that write's key first.
func dedupKey(origin, key string) string { return origin + "\x00" + key }

// keyOrigin is the origin a remembered key belongs to.
func keyOrigin(key string) string {
	origin, _, _ := strings.Cut(key, "\x00")
	return origin
}

// fromOrigin is how many keys origin has remembered.
func (d *dedupTable) fromOrigin(origin string) int { return d.perOrigin[origin] }

func (d *dedupTable) get(key string) *meshnodev1.DedupRecord { return d.m[key] }

func (d *dedupTable) len() int { return len(d.m) }

func (d *dedupTable) add(r *meshnodev1.DedupRecord) {
	if _, dup := d.m[r.GetKey()]; dup {
		return
	}
	d.m[r.GetKey()] = r
	d.fifo = append(d.fifo, r)
	d.perOrigin[keyOrigin(r.GetKey())]++
}

// expire drops entries that expired by now, and the oldest beyond max.
func (d *dedupTable) expire(now uint64, max int) {
	for d.start < len(d.fifo) {
		r := d.fifo[d.start]
		if r.GetExpiresUnixNano() >= now && len(d.m) <= max {
			break
		}
		delete(d.m, r.GetKey())
		if o := keyOrigin(r.GetKey()); d.perOrigin[o] <= 1 {
			delete(d.perOrigin, o)
		} else {
			d.perOrigin[o]--
		}
		d.fifo[d.start] = nil
		d.start++
	}
	// Compact once the dead prefix dominates, so memory stays bounded.
	if d.start > 1024 && d.start > len(d.fifo)/2 {
		d.fifo = append([]*meshnodev1.DedupRecord(nil), d.fifo[d.start:]...)
		d.start = 0
	}
}

// entries returns the live records oldest first (a copy of the pointers).
func (d *dedupTable) entries() []*meshnodev1.DedupRecord {
	return append([]*meshnodev1.DedupRecord(nil), d.fifo[d.start:]...)
}
