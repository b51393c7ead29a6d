package dataplane

import (
	"context"
	"sync"
)

// inflightCalls tracks forwarded calls per target node so they can be
// cancelled when that node dies.
type inflightCalls struct {
	mu   sync.Mutex
	next uint64
	m    map[string]map[uint64]context.CancelCauseFunc
}

// track registers cancel under node and returns the function that forgets it.
func (f *inflightCalls) track(node string, cancel context.CancelCauseFunc) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]map[uint64]context.CancelCauseFunc{}
	}
	if f.m[node] == nil {
		f.m[node] = map[uint64]context.CancelCauseFunc{}
	}
	f.next++
	id := f.next
	f.m[node][id] = cancel
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.m[node], id)
		if len(f.m[node]) == 0 {
			delete(f.m, node)
		}
	}
}

// cancelNode cancels every call in flight to node.
func (f *inflightCalls) cancelNode(node string) int {
	f.mu.Lock()
	calls := f.m[node]
	delete(f.m, node)
	f.mu.Unlock()
	for _, cancel := range calls {
		cancel(errNodeDied)
	}
	return len(calls)
}
