package node

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"google.golang.org/protobuf/proto"
)

// clusterID is signed into every vote so votes cannot be replayed across
// clusters.
func (n *Node) clusterID() string { return n.id.TrustDomain }

// quorumGlue implements the coordinator's Directory, Requester and
// Committer with the registry, the peer transport and Raft.
type quorumGlue struct{ n *Node }

func decisionStatusName(s meshnodev1.DecisionStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "DECISION_STATUS_"))
}

func (g quorumGlue) Commit(ctx context.Context, d *meshnodev1.Decision) (*meshnodev1.Decision, error) {
	n := g.n
	b, err := proto.Marshal(d)
	if err != nil {
		return nil, err
	}
	id := d.GetProposal().GetId()
	_, res, err := n.store.Apply(ctx, &meshnodev1.Command{Version: 1, Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{
		Decision: &meshnodev1.DecisionRecord{Id: id, Status: decisionStatusName(d.GetStatus()), Decision: b},
	}}})
	if err != nil {
		return nil, storeError("commit decision "+id, err)
	}
	if err := resultError(res, "commit decision "+id); err != nil {
		return nil, err
	}
	out := &meshnodev1.Decision{}
	if err := proto.Unmarshal(res.GetDecision().GetDecision(), out); err != nil {
		return nil, fmt.Errorf("decode committed decision %s: %w", id, err)
	}
	out.CommitIndex = res.GetDecision().GetModifyIndex()
	if len(out.GetEquivocations()) > 0 {
		keys := n.catalog.VoteKeys(ctx)
		for _, e := range out.GetEquivocations() {
			// Evidence is checked against the registered keys before anyone
			// is flagged: a compromised coordinator must not be able to get
			// honest agents excluded.
			if err := quorum.VerifyEquivocation(e, keys); err != nil {
				n.log.Warn("ignoring equivocation evidence that does not verify", "agent", e.GetAgentId(), "proposal", id, "err", err)
				continue
			}
			n.flagAgent(ctx, e.GetAgentId(), "equivocated on proposal "+id)
		}
	}
	return out, nil
}

func (n *Node) flagAgent(ctx context.Context, agentID, reason string) {
	_, res, err := n.store.Apply(ctx, &meshnodev1.Command{Version: 1, IdempotencyKey: "flag/" + agentID + "/" + reason,
		Op: &meshnodev1.Command_FlagAgent{FlagAgent: &meshnodev1.FlagAgentCommand{Id: agentID, Reason: reason}}})
	if err == nil {
		err = resultError(res, "flag agent")
	}
	if err != nil {
		n.log.Warn("flagging an equivocating agent failed", "agent", agentID, "err", err)
		return
	}
	n.log.Warn("agent flagged: it signed two different votes on one proposal", "agent", agentID, "reason", reason)
}

func (g quorumGlue) Decision(ctx context.Context, id string) (*meshnodev1.Decision, error) {
	rec, _, err := g.n.store.Decision(ctx, consensus.ReadOptions{}, id)
	if errors.Is(err, consensus.ErrNotFound) {
		// The local replica may lag a decision just committed elsewhere:
		// confirm with the leader before saying it does not exist.
		rec, _, err = g.n.store.Decision(ctx, consensus.ReadOptions{Consistency: consensus.Consistent}, id)
	}
	return decisionFromRecord(id, rec, err)
}

func (g quorumGlue) Recorded(ctx context.Context, id string) (*meshnodev1.Decision, error) {
	rec, _, err := g.n.store.Decision(ctx, consensus.ReadOptions{}, id)
	return decisionFromRecord(id, rec, err)
}

func decisionFromRecord(id string, rec *meshnodev1.DecisionRecord, err error) (*meshnodev1.Decision, error) {
	if errors.Is(err, consensus.ErrNotFound) {
		return nil, fmt.Errorf("decision %s: %w", id, quorum.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	d := &meshnodev1.Decision{}
	if err := proto.Unmarshal(rec.GetDecision(), d); err != nil {
		return nil, err
	}
	d.CommitIndex = rec.GetModifyIndex()
	return d, nil
}

func (n *Node) startQuorum(context.Context) error {
	cfg := quorum.DefaultCoordinatorConfig()
	cfg.ClusterID = n.clusterID()
	cfg.Logger = n.log.With("component", "quorum")
	g := quorumGlue{n}
	c, err := quorum.NewCoordinator(cfg, n.catalog, n.plane.Load(), g)
	if err != nil {
		return err
	}
	n.coordinator = c
	return nil
}

// reportDoubleVote handles a second vote for an answered request: if both
// are validly signed and differ, that is equivocation: evidence is verified
// and the agent flagged, so it is left out of voter sets.
func (n *Node) reportDoubleVote(ctx context.Context, first, second *meshnodev1.Vote) {
	if proto.Equal(first, second) {
		return
	}
	ev, err := quorum.NewEvidence(first, second)
	if err != nil {
		return
	}
	if err := quorum.VerifyEquivocation(ev, n.catalog.VoteKeys(ctx)); err != nil {
		n.log.Debug("second vote is not equivocation evidence", "agent", second.GetVoterAgentId(), "err", err)
		return
	}
	n.flagAgent(ctx, ev.GetAgentId(), "signed two different votes on proposal "+second.GetProposalId())
}
