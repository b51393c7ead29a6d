package catalog

import (
	"context"
	"crypto"
	"errors"
	"sync/atomic"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
)

// Registry is the part of the consensus store the catalog reads: the local,
// index-stamped replica (and, for a capability nobody offers locally, one
// consistent read). *consensus.Store implements it.
type Registry interface {
	Index() uint64
	Agents(ctx context.Context, opts consensus.ReadOptions, f consensus.AgentFilter) ([]*meshnodev1.Agent, uint64, error)
	Agent(ctx context.Context, opts consensus.ReadOptions, id string) (*meshnodev1.Agent, uint64, error)
	Nodes(ctx context.Context, opts consensus.ReadOptions) ([]*meshnodev1.NodeRecord, uint64, error)
	Node(ctx context.Context, opts consensus.ReadOptions, name string) (*meshnodev1.NodeRecord, uint64, error)
	Policy(ctx context.Context, opts consensus.ReadOptions, key string) (*meshnodev1.PolicyRecord, uint64, error)
	IsNodeRevoked(ctx context.Context, opts consensus.ReadOptions, node string) (bool, error)
}

// Gossip is what the catalog reads from membership: liveness, signed load
// reports and addresses. *gossip.Gossip implements it. None of it blocks.
type Gossip interface {
	NodeAlive(node string) bool
	LoadOf(agentID, owner string) (gossip.AgentLoad, bool)
	Member(name string) (gossip.Member, bool)
}

// Local is the hub's view (*hub.Hub) of the agents attached to this node. It must not
// block: it runs on every call.
type Local interface {
	Serving(agentID string) bool
	Load(agentID string) (hub.Load, bool)
	Snapshot() []hub.Load
}

// Config configures a Catalog. Every field is required.
type Config struct {
	LocalNode string
	Registry  Registry
	Local     Local
}

// Catalog answers the node's questions about agents and nodes. Safe for
// concurrent use.
type Catalog struct {
	cfg      Config
	gossip   atomic.Pointer[gossipRef]
	stats    callStats
	policies indexCache[routing.Policy]      // by capability
	agents   indexCache[[]*meshnodev1.Agent] // by capability; shared with the store: read-only
	keys     indexCache[crypto.PublicKey]    // parsed node gossip keys, by node
	owners   indexCache[map[string]string]   // "" -> address -> the node registered there
}

type gossipRef struct{ g Gossip }

// New returns a catalog over cfg's sources.
func New(cfg Config) (*Catalog, error) {
	switch {
	case cfg.LocalNode == "":
		return nil, errors.New("catalog: LocalNode is required")
	case cfg.Registry == nil:
		return nil, errors.New("catalog: Registry is required")
	case cfg.Local == nil:
		return nil, errors.New("catalog: Local is required")
	}
	return &Catalog{cfg: cfg}, nil
}

// SetGossip gives the catalog its membership view. Gossip itself needs the
// catalog (node keys, agent owners) to start, so it arrives afterwards;
// until then every remote node counts as not alive.
func (c *Catalog) SetGossip(g Gossip) { c.gossip.Store(&gossipRef{g}) }

func (c *Catalog) membership() Gossip {
	if r := c.gossip.Load(); r != nil {
		return r.g
	}
	return nil
}

var (
	_ routing.Resolver = (*Catalog)(nil)
)
