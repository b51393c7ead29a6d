package node

import (
	"context"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/catalog"
	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/transport"
)

// peerTrust is what the transport's trust hooks read: the local replica and
// the catalog, set together when consensus starts.
type peerTrust struct {
	store   *consensus.Store
	catalog *catalog.Catalog
}

// raftPeer admits a Raft stream or dial only from a server: a certificate
// the CA marked with the server role (issued to admitted servers only), or
// a node the local state records as an admitted server (certificates issued
// before the mark existed). A client's certificate is neither, whatever
// name it carries.
func (n *Node) raftPeer(p transport.Peer) bool {
	if p.ID.Kind != pki.KindNode || !n.isServer() {
		return false
	}
	if len(p.Certificates) > 0 && pki.IsServerCert(p.Certificates[0]) {
		return true
	}
	t := n.peerTrust.Load()
	if t == nil {
		return false
	}
	ok, err := t.store.ServerAdmitted(context.Background(), consensus.ReadOptions{}, p.ID.Node)
	return ok && err == nil
}

// expectedPeer pins a dial to the node registered at addr.
func (n *Node) expectedPeer(addr string) (string, bool) {
	t := n.peerTrust.Load()
	if t == nil {
		return "", false
	}
	return t.catalog.NodeAt(addr)
}
