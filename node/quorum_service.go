package node

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

type quorumService struct {
	meshnodev1.UnimplementedQuorumServiceServer
	n *Node
}

func (s *quorumService) Propose(ctx context.Context, req *meshnodev1.ProposeRequest) (*meshnodev1.ProposeResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	p := proto.Clone(req.GetProposal()).(*meshnodev1.Proposal)
	if p == nil || p.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "proposal.id: must not be empty")
	}
	p.ProposerNode = s.n.cfg.Name
	p.ProposerAgentId = s.n.hub.OwnedBy(hub.Owner(cred))
	var d *meshnodev1.Decision
	if req.GetWait() {
		d, err = s.n.coordinator.Propose(ctx, p)
	} else {
		d, err = s.n.coordinator.Start(ctx, p)
	}
	if err != nil {
		return nil, quorumError(err)
	}
	return &meshnodev1.ProposeResponse{Decision: d}, nil
}

// quorumError keeps gRPC statuses and maps the rest to InvalidArgument when
// they are validation errors, Unavailable otherwise.
func quorumError(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	if errors.Is(err, quorum.ErrInvalidProposal) || errors.Is(err, quorum.ErrTooFewHosts) || errors.Is(err, quorum.ErrTooFewVoters) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if errors.Is(err, quorum.ErrProposalConflict) {
		return status.Error(codes.AlreadyExists, err.Error())
	}
	if errors.Is(err, quorum.ErrNotFound) {
		return status.Error(codes.NotFound, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

func (s *quorumService) Vote(ctx context.Context, req *meshnodev1.VoteRequest) (*meshnodev1.VoteResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	agentID := s.n.hub.AgentID(req.GetVote().GetVoterAgentId())
	if err := s.n.hub.Owned(agentID, hub.Owner(cred)); err != nil {
		return nil, err
	}
	if err := s.n.hub.Vote(ctx, agentID, req); err != nil {
		return nil, err
	}
	return &meshnodev1.VoteResponse{}, nil
}

func (s *quorumService) GetDecision(ctx context.Context, req *meshnodev1.GetDecisionRequest) (*meshnodev1.GetDecisionResponse, error) {
	if d, ok := s.n.coordinator.InFlight(req.GetId()); ok {
		return &meshnodev1.GetDecisionResponse{Decision: d}, nil
	}
	d, err := quorumGlue{s.n}.Decision(ctx, req.GetId())
	if err != nil {
		return nil, quorumError(err)
	}
	return &meshnodev1.GetDecisionResponse{Decision: d}, nil
}

func (s *quorumService) ListDecisions(ctx context.Context, req *meshnodev1.ListDecisionsRequest) (*meshnodev1.ListDecisionsResponse, error) {
	size := int(req.GetPageSize())
	if size <= 0 || size > consensus.MaxDecisionLimit {
		size = consensus.DefaultDecisionLimit
	}
	f := consensus.DecisionFilter{PageToken: req.GetPageToken(), Limit: size}
	if req.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_UNSPECIFIED {
		f.Status = decisionStatusName(req.GetStatus())
	}
	// The kind lives inside the decision blob: only a kind filter decodes
	// records the page may not return, and the ones it keeps are not
	// decoded twice.
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
	recs, next, _, err := s.n.store.Decisions(ctx, consensus.ReadOptions{}, f)
	if errors.Is(err, consensus.ErrInvalidPageToken) {
		return nil, status.Errorf(codes.InvalidArgument, "page_token %q is not one this node issued", req.GetPageToken())
	}
	if err != nil {
		return nil, storeError("list decisions", err)
	}
	out := &meshnodev1.ListDecisionsResponse{NextPageToken: next, Decisions: make([]*meshnodev1.Decision, 0, len(recs))}
	for _, r := range recs {
		d, ok := decoded[r.GetId()]
		if !ok {
			d = &meshnodev1.Decision{}
			if err := proto.Unmarshal(r.GetDecision(), d); err != nil {
				s.n.log.Warn("skipping a decision whose record does not decode", "decision", r.GetId(), "err", err)
				continue
			}
		}
		d.CommitIndex = r.GetModifyIndex()
		out.Decisions = append(out.Decisions, d)
	}
	return out, nil
}

func (s *quorumService) Review(ctx context.Context, req *meshnodev1.ReviewRequest) (*meshnodev1.ReviewResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	d, err := quorumGlue{s.n}.Decision(ctx, req.GetId())
	if err != nil {
		return nil, quorumError(err)
	}
	var approve bool
	switch req.GetOutcome() {
	case meshnodev1.Choice_CHOICE_APPROVE:
		approve = true
	case meshnodev1.Choice_CHOICE_REJECT:
	default:
		return nil, status.Error(codes.InvalidArgument, "outcome: must be APPROVE or REJECT")
	}
	operator := "uid=" + strconv.Itoa(int(cred.UID)) + "@" + s.n.cfg.Name
	reviewed, err := quorum.ApplyReview(d, operator, approve, req.GetReason(), time.Now())
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	committed, err := quorumGlue{s.n}.Commit(ctx, reviewed)
	if err != nil {
		return nil, err
	}
	if committed.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED {
		return nil, status.Errorf(codes.Aborted, "decision %s changed while it was reviewed; read it again", req.GetId())
	}
	return &meshnodev1.ReviewResponse{Decision: committed}, nil
}
