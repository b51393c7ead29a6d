package node

import (
	"sync"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
)

// resolveCache keeps, per capability, the registry's agents and the policy
// in force as of one applied index. Every call resolves its capability;
// while the registry has not changed, two read transactions and a scan are
// saved. What changes between registry writes (liveness, readiness, load)
// comes from gossip on every call, not from here.
type resolveCache struct {
	mu sync.Mutex
	m  map[string]resolvedCapability
}

type resolvedCapability struct {
	index  uint64
	agents []*meshnodev1.Agent // shared with the store: read-only
	policy routing.Policy
}

// maxResolved bounds the cache; past it the cache starts over, which costs
// one registry read per capability.
const maxResolved = 4096

func (c *resolveCache) get(capability string, index uint64) (resolvedCapability, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[capability]
	return r, ok && r.index == index
}

func (c *resolveCache) put(capability string, r resolvedCapability) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxResolved {
		c.m = make(map[string]resolvedCapability)
	}
	c.m[capability] = r
}
