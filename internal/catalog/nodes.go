package catalog

import (
	"context"
	"crypto"
	"crypto/x509"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// DiscoverLoad is the load Discover reports: AgentLoad, or when nobody has
// reported one, the registry's status.
func (c *Catalog) DiscoverLoad(a *meshnodev1.Agent) *meshnodev1.AgentLoad {
	if l := c.AgentLoad(a); l != nil {
		return l
	}
	if a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_READY {
		return &meshnodev1.AgentLoad{Status: "ready"}
	}
	return &meshnodev1.AgentLoad{Status: "unknown"}
}

// NodeAddress finds a node's QUIC address: gossip first (fresh), then the
// registry.
func (c *Catalog) NodeAddress(name string) (string, bool) {
	if g := c.membership(); g != nil {
		if m, ok := g.Member(name); ok && m.Meta.QUICAddr != "" {
			return m.Meta.QUICAddr, true
		}
	}
	rec, _, err := c.cfg.Registry.Node(context.Background(), consensus.ReadOptions{}, name)
	if err == nil && rec.GetAddress() != "" {
		return rec.GetAddress(), true
	}
	return "", false
}

// NodeAt says which node must answer at a peer address: the one whose
// registry record holds it. The transport pins every dial to it, so a node
// that answers at another's address (a stolen certificate on a hijacked
// address) is refused instead of receiving its calls and vote requests.
// An address no record holds (a seed), or that two records claim, is not
// pinned: any node of the cluster may answer there. The transport calls
// it on every call, so the map is built once per registry index.
func (c *Catalog) NodeAt(addr string) (string, bool) {
	index := c.cfg.Registry.Index()
	owners, ok := c.owners.get("", index)
	if !ok {
		owners = c.addressOwners()
		c.owners.put("", index, owners)
	}
	node := owners[addr]
	return node, node != ""
}

func (c *Catalog) addressOwners() map[string]string {
	recs, _, err := c.cfg.Registry.Nodes(context.Background(), consensus.ReadOptions{})
	if err != nil {
		return nil
	}
	owners := make(map[string]string, len(recs))
	for _, r := range recs {
		addr := r.GetAddress()
		if prev, dup := owners[addr]; dup && prev != r.GetName() {
			owners[addr] = "" // claimed twice: trust neither
			continue
		}
		owners[addr] = r.GetName()
	}
	return owners
}

// NodePublicKey resolves the key a node signs its gossip with, from its
// registry record. Gossip calls it from its packet handler, so it reads only
// the local replica; every fresh load message needs one, so parsed keys are
// kept per registry index.
func (c *Catalog) NodePublicKey(node string) (crypto.PublicKey, bool) {
	index := c.cfg.Registry.Index()
	if pub, ok := c.keys.get(node, index); ok {
		return pub, pub != nil
	}
	rec, _, err := c.cfg.Registry.Node(context.Background(), consensus.ReadOptions{}, node)
	if err != nil || len(rec.GetPublicKey()) == 0 {
		return nil, false // not cached: the record may be on its way
	}
	pub, err := x509.ParsePKIXPublicKey(rec.GetPublicKey())
	if err != nil {
		pub = nil
	}
	c.keys.put(node, index, pub)
	return pub, pub != nil
}

// AgentNode tells gossip which node an agent belongs to, so a node cannot
// publish load for another node's agent even under its own signature.
func (c *Catalog) AgentNode(agentID string) (string, bool) {
	a, _, err := c.cfg.Registry.Agent(context.Background(), consensus.ReadOptions{}, agentID)
	if err != nil {
		return "", false
	}
	return a.GetNode(), true
}

// LostNodes lists the addresses of registered, unrevoked nodes that gossip
// no longer lists at all: after a partition longer than gossip's departed
// retention, the way back to the other side.
func (c *Catalog) LostNodes(ctx context.Context) []string {
	recs, _, err := c.cfg.Registry.Nodes(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil
	}
	g := c.membership()
	inView := func(name string) bool {
		if g == nil {
			return false
		}
		_, ok := g.Member(name)
		return ok
	}
	revoked := func(name string) bool {
		r, err := c.cfg.Registry.IsNodeRevoked(ctx, consensus.ReadOptions{}, name)
		return err != nil || r
	}
	return lostAddrs(c.cfg.LocalNode, recs, inView, revoked)
}

func lostAddrs(self string, recs []*meshnodev1.NodeRecord, inView, revoked func(string) bool) []string {
	var out []string
	for _, r := range recs {
		if r.GetName() == self || r.GetAddress() == "" || inView(r.GetName()) || revoked(r.GetName()) {
			continue
		}
		out = append(out, r.GetAddress())
	}
	return out
}
