package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Other is the label value every agent or capability past the limit is
// folded under.
const Other = "other"

// none is the label value of an empty id: a call not made for an agent, or
// one that reached no agent.
const none = "none"

// folder admits up to max distinct label values and folds the rest under
// Other. Admission is first come, first served: the agents that called
// first keep their own series for the life of the process, so a series
// never changes meaning under a running query.
type folder struct {
	max    int
	folded prometheus.Counter // distinct values folded

	mu       sync.RWMutex
	seen     map[string]string // value -> its label (itself or Other)
	admitted int               // values in seen with their own label
}

// maxRemembered bounds the memory of folded values: past it a folded value
// is not remembered (and so may be counted again), but stays folded.
const maxRemembered = 1 << 16

func newFolder(max int, folded prometheus.Counter) *folder {
	return &folder{max: max, folded: folded, seen: map[string]string{}}
}

// label returns the label value for v. The common case is one read-locked
// map lookup and no allocation.
func (f *folder) label(v string) string {
	if v == "" {
		return none
	}
	f.mu.RLock()
	l, ok := f.seen[v]
	f.mu.RUnlock()
	if ok {
		return l
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.seen[v]; ok {
		return l
	}
	if f.admitted < f.max {
		f.admitted++
		f.seen[v] = v
		return v
	}
	f.folded.Inc()
	if len(f.seen) < maxRemembered {
		f.seen[v] = Other
	}
	return Other
}
