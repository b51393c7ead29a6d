package node

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// clusterID is signed into every vote so votes cannot be replayed across
// clusters: the SHA-256 of the cluster's first root certificate, which is
// random per cluster (its key is), unlike the trust domain that two
// clusters may share. It is also what admin commands are signed for.
func (n *Node) clusterID() string {
	roots := n.keeper.Current().Roots
	if len(roots) == 0 {
		return n.id.TrustDomain // no credentials yet: nothing can be signed or verified anyway
	}
	return hex.EncodeToString(operator.ClusterIDOfRoot(roots[0].Raw))
}

// startQuorum builds the coordinator: voters from the catalog, vote
// requests over the data plane, decisions into Raft.
func (n *Node) startQuorum(context.Context) error {
	cfg := quorum.DefaultCoordinatorConfig()
	cfg.ClusterID = n.clusterID()
	cfg.Clock = n.clock
	cfg.Policy = func(ctx context.Context, kind string) (*meshnodev1.QuorumPolicyRecord, error) {
		return n.store.QuorumPolicy(ctx, consensus.ReadOptions{}, kind)
	}
	qm := n.metrics.Quorum()
	cfg.Finished = func(d *meshnodev1.Decision) {
		status := consensus.DecisionStatusName(d.GetStatus())
		outcome := strings.ToLower(strings.TrimPrefix(d.GetOutcome().String(), "CHOICE_"))
		voting := d.GetClosedAt().AsTime().Sub(d.GetProposal().GetCreatedAt().AsTime())
		qm.Decided(d.GetProposal().GetKind(), status, outcome, voting, len(d.GetEquivocations()))
	}
	cfg.Refused = func(err error) {
		switch {
		case errors.Is(err, quorum.ErrBelowPolicy):
			qm.Refused("below_policy")
		case errors.Is(err, quorum.ErrTooFewVoters), errors.Is(err, quorum.ErrTooFewHosts):
			qm.Refused("too_few_voters")
		case errors.Is(err, quorum.ErrProposalConflict):
			qm.Refused("conflict")
		default:
			qm.Refused("invalid")
		}
	}
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
		Coordinator: n.coordinator, Decisions: n.decisions, Gossip: n.gossip, Authz: n.authz,
		Traffic: n.traffic, TrafficPeers: trafficPeers{n},
		Self: func() api.Self {
			return api.Self{Role: n.role(), BindAddress: n.ep.Addr().String(), DataDir: n.cfg.DataDir, SpiffeID: n.id.String(),
				StartedAt: n.startedAt, CertificateExpiresAt: n.keeper.Current().Leaf().NotAfter, ClusterID: n.clusterID()}
		},
		PKI:    n.pkiService,
		Clock:  n.clock,
		Logger: n.log,
	})
}
