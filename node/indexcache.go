package node

import "sync"

// indexCache memoises, per key, a value derived from the registry as of
// one applied index. The call path resolves a capability's policy and
// agents on every call, on the caller's node and again on the target's;
// while the registry has not changed, the answer is reused and no read
// transaction is opened. What changes between registry writes (liveness,
// readiness, load) comes from gossip on every call, never from here.
type indexCache[T any] struct {
	mu sync.Mutex
	m  map[string]indexed[T]
}

type indexed[T any] struct {
	index uint64
	v     T
}

// maxIndexed bounds a cache; past it the cache starts over, which costs one
// registry read per key.
const maxIndexed = 4096

func (c *indexCache[T]) get(key string, index uint64) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e.v, ok && e.index == index
}

func (c *indexCache[T]) put(key string, index uint64, v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxIndexed {
		c.m = make(map[string]indexed[T])
	}
	c.m[key] = indexed[T]{index: index, v: v}
}
