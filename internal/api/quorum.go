package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// quorumService serves QuorumService: proposals go to the coordinator,
// votes to the hub (which hands them to the waiting request), decisions are
// read and reviewed through Decisions.
type quorumService struct {
	meshnodev1.UnimplementedQuorumServiceServer
	cfg Config
}

func (s *quorumService) Propose(ctx context.Context, req *meshnodev1.ProposeRequest) (*meshnodev1.ProposeResponse, error) {
	owner, err := callerOwner(ctx)
	if err != nil {
		return nil, err
	}
	p := proto.Clone(req.GetProposal()).(*meshnodev1.Proposal)
	if p == nil || p.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "proposal.id: must not be empty")
	}
	p.ProposerNode = s.cfg.Node
	p.ProposerAgentId = s.cfg.Hub.OwnedBy(owner)
	var d *meshnodev1.Decision
	if req.GetWait() {
		d, err = s.cfg.Coordinator.Propose(ctx, p)
	} else {
		d, err = s.cfg.Coordinator.Start(ctx, p)
	}
	if err != nil {
		return nil, err
	}
	return &meshnodev1.ProposeResponse{Decision: d}, nil
}

func (s *quorumService) Vote(ctx context.Context, req *meshnodev1.VoteRequest) (*meshnodev1.VoteResponse, error) {
	owner, err := callerOwner(ctx)
	if err != nil {
		return nil, err
	}
	agentID := s.cfg.Hub.AgentID(req.GetVote().GetVoterAgentId())
	if err := s.cfg.Hub.Owned(agentID, owner); err != nil {
		return nil, err
	}
	if err := s.cfg.Hub.Vote(ctx, agentID, req); err != nil {
		return nil, err
	}
	return &meshnodev1.VoteResponse{}, nil
}

func (s *quorumService) GetDecision(ctx context.Context, req *meshnodev1.GetDecisionRequest) (*meshnodev1.GetDecisionResponse, error) {
	if d, ok := s.cfg.Coordinator.InFlight(req.GetId()); ok {
		return &meshnodev1.GetDecisionResponse{Decision: d}, nil
	}
	d, err := s.cfg.Decisions.Decision(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &meshnodev1.GetDecisionResponse{Decision: d}, nil
}

func (s *quorumService) ListDecisions(ctx context.Context, req *meshnodev1.ListDecisionsRequest) (*meshnodev1.ListDecisionsResponse, error) {
	return listDecisions(ctx, s.cfg.Store, req, s.cfg.Logger)
}

// Review records an operator's review of an escalated decision. It is an
// admin command: the reviewer is whoever signed it (role reviewer), as the
// state machine verifies; the socket's caller is nobody in particular.
func (s *quorumService) Review(ctx context.Context, req *meshnodev1.ReviewRequest) (*meshnodev1.ReviewResponse, error) {
	switch req.GetOutcome() {
	case meshnodev1.Choice_CHOICE_APPROVE, meshnodev1.Choice_CHOICE_REJECT:
	default:
		return nil, status.Error(codes.InvalidArgument, "outcome: must be APPROVE or REJECT")
	}
	idx, _, err := submitAdmin(ctx, s.cfg.Store, "review "+req.GetId(), func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_Review{Review: req}
	})
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.WaitApplied(ctx, idx); err != nil {
		return nil, apierror.Wrap("review "+req.GetId(), err)
	}
	d, err := s.cfg.Decisions.Decision(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED {
		return nil, status.Errorf(codes.Aborted, "decision %s changed while it was reviewed; read it again", req.GetId())
	}
	return &meshnodev1.ReviewResponse{Decision: d}, nil
}

// ClearFlag lets a flagged agent's votes count again: a reviewer's admin
// command, with the reason recorded in the log.
func (s *quorumService) ClearFlag(ctx context.Context, req *meshnodev1.ClearFlagRequest) (*meshnodev1.ClearFlagResponse, error) {
	switch {
	case req.GetAgentId() == "":
		return nil, status.Error(codes.InvalidArgument, "agent_id: name the flagged agent as NODE/NAME")
	case strings.TrimSpace(req.GetReason()) == "":
		return nil, status.Error(codes.InvalidArgument, "reason: say why the agent's votes may count again (--reason TEXT)")
	}
	idx, by, err := submitAdmin(ctx, s.cfg.Store, "clear flag of "+req.GetAgentId(), func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_ClearFlag{ClearFlag: req}
	})
	if err != nil {
		return nil, err
	}
	s.cfg.Logger.Warn("equivocation flag cleared", "agent", req.GetAgentId(), "reason", req.GetReason(), "operator", by, "index", idx)
	return &meshnodev1.ClearFlagResponse{Index: idx}, nil
}

// SetQuorumPolicy sets a kind's quorum policy: a policy operator's admin
// command, validated again by the state machine.
func (s *quorumService) SetQuorumPolicy(ctx context.Context, req *meshnodev1.SetQuorumPolicyRequest) (*meshnodev1.SetQuorumPolicyResponse, error) {
	if err := quorum.ValidatePolicy(req.GetPolicy()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	kind := req.GetPolicy().GetKind()
	idx, by, err := submitAdmin(ctx, s.cfg.Store, fmt.Sprintf("set the quorum policy of kind %q", kind), func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_SetQuorumPolicy{SetQuorumPolicy: req}
	})
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.WaitApplied(ctx, idx); err != nil {
		return nil, apierror.Wrap("set quorum policy", err)
	}
	s.cfg.Logger.Info("quorum policy set", "kind", kind, "min_voters", req.GetPolicy().GetMinVoters(), "operator", by, "index", idx)
	return &meshnodev1.SetQuorumPolicyResponse{Index: idx}, nil
}

// ListQuorumPolicies lists the stored quorum policies and the default a
// kind without its own gets.
func (s *quorumService) ListQuorumPolicies(ctx context.Context, _ *meshnodev1.ListQuorumPoliciesRequest) (*meshnodev1.ListQuorumPoliciesResponse, error) {
	recs, _, err := s.cfg.Store.QuorumPolicies(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil, apierror.Wrap("list quorum policies", err)
	}
	def, err := s.cfg.Store.QuorumPolicy(ctx, consensus.ReadOptions{}, "")
	if err != nil {
		return nil, apierror.Wrap("list quorum policies", err)
	}
	return &meshnodev1.ListQuorumPoliciesResponse{Policies: recs, EffectiveDefault: def.GetPolicy()}, nil
}

// listDecisions pages the decision records, newest first. The kind lives
// inside the decision blob: only a kind filter decodes records the page may
// not return, and the ones it keeps are not decoded twice.
func listDecisions(ctx context.Context, st *consensus.Store, req *meshnodev1.ListDecisionsRequest, log *slog.Logger) (*meshnodev1.ListDecisionsResponse, error) {
	size := int(req.GetPageSize())
	if size <= 0 || size > consensus.MaxDecisionLimit {
		size = consensus.DefaultDecisionLimit
	}
	f := consensus.DecisionFilter{PageToken: req.GetPageToken(), Limit: size}
	if req.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_UNSPECIFIED {
		f.Status = consensus.DecisionStatusName(req.GetStatus())
	}
	decoded := map[string]*meshnodev1.Decision{}
	if kind := req.GetKind(); kind != "" {
		f.Match = func(r *meshnodev1.DecisionRecord) bool {
			d := &meshnodev1.Decision{}
			if proto.Unmarshal(r.GetDecision(), d) != nil || d.GetProposal().GetKind() != kind {
				return false
			}
			decoded[r.GetId()] = d
			return true
		}
	}
	recs, next, _, err := st.Decisions(ctx, consensus.ReadOptions{}, f)
	if errors.Is(err, consensus.ErrInvalidPageToken) {
		return nil, status.Errorf(codes.InvalidArgument, "page_token %q is not one this node issued", req.GetPageToken())
	}
	if err != nil {
		return nil, apierror.Wrap("list decisions", err)
	}
	out := &meshnodev1.ListDecisionsResponse{NextPageToken: next, Decisions: make([]*meshnodev1.Decision, 0, len(recs))}
	for _, r := range recs {
		d, ok := decoded[r.GetId()]
		if !ok {
			d = &meshnodev1.Decision{}
			if err := proto.Unmarshal(r.GetDecision(), d); err != nil {
				log.Warn("skipping a decision whose record does not decode", "decision", r.GetId(), "err", err)
				continue
			}
		}
		d.CommitIndex = r.GetModifyIndex()
		out.Decisions = append(out.Decisions, d)
	}
	return out, nil
}
