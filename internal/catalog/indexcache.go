package catalog

import (
	"sync"
	"sync/atomic"
)

// indexCache memoises, per key, a value derived from the registry as of
// one applied index. The call path resolves a capability's policy and
// agents on every call, on the caller's node and again on the target's;
// while the registry has not changed, the answer is reused and no read
// transaction is opened. What changes between registry writes (liveness,
// readiness, load) comes from gossip on every call, never from here.
//
// Reads take no lock: with dozens of concurrent calls a mutex here was
// contended enough to cost 9% of a busy node's CPU.
type indexCache[T any] struct {
	m    sync.Map // string -> *indexed[T]
	keys atomic.Int64
}

type indexed[T any] struct {
	index uint64
	v     T
}

// maxIndexed bounds a cache; past it the cache starts over, which costs one
// registry read per key.
const maxIndexed = 4096

func (c *indexCache[T]) get(key string, index uint64) (T, bool) {
	if e, ok := c.m.Load(key); ok {
		e := e.(*indexed[T])
		return e.v, e.index == index
	}
	var zero T
	return zero, false
}

func (c *indexCache[T]) put(key string, index uint64, v T) {
	if _, replaced := c.m.Swap(key, &indexed[T]{index: index, v: v}); replaced {
		return
	}
	if c.keys.Add(1) > maxIndexed {
		c.m.Clear()
		c.keys.Store(0)
	}
}
