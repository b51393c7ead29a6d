package node

import (
	"context"

	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/quorum"
)

// clusterID is signed into every vote so votes cannot be replayed across
// clusters.
func (n *Node) clusterID() string { return n.id.TrustDomain }

// startQuorum builds the coordinator: voters from the catalog, vote
// requests over the data plane, decisions into Raft.
func (n *Node) startQuorum(context.Context) error {
	cfg := quorum.DefaultCoordinatorConfig()
	cfg.ClusterID = n.clusterID()
	cfg.Clock = n.clock
	cfg.Logger = n.log.With("component", "quorum")
	c, err := quorum.NewCoordinator(cfg, n.catalog, n.plane.Load(), n.decisions)
	if err != nil {
		return err
	}
	n.coordinator = c
	return nil
}

// registerAPI puts the agent API's services on the socket.
func (n *Node) registerAPI() error {
	return api.Register(n.api.Registrar(), api.Config{
		Node: n.cfg.Name, Version: Version,
		Store: n.store, Registry: n.registry, Hub: n.hub, Catalog: n.catalog, Plane: n.plane.Load(),
		Coordinator: n.coordinator, Decisions: n.decisions, Gossip: n.gossip,
		Traffic: n.traffic, TrafficPeers: trafficPeers{n},
		Self: func() api.Self {
			return api.Self{Role: n.role(), BindAddress: n.ep.Addr().String(), DataDir: n.cfg.DataDir, SpiffeID: n.id.String(),
				StartedAt: n.startedAt, CertificateExpiresAt: n.keeper.Current().Leaf().NotAfter}
		},
		PKI:    n.pkiService,
		Clock:  n.clock,
		Logger: n.log,
	})
}
