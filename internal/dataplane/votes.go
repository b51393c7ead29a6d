package dataplane

import (
	"context"
	"strings"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var _ quorum.Requester = (*Plane)(nil)

// RequestVote asks one voter for its signed vote on a proposal: through the
// hub for a local agent, through the voter's node otherwise. The vote is
// returned as signed; the coordinator verifies it.
func (p *Plane) RequestVote(ctx context.Context, v quorum.Voter, prop *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
	if v.Node == p.cfg.LocalNode {
		return p.cfg.Local.AskVote(ctx, v.AgentID, prop, p.cfg.ClusterID)
	}
	addr, ok := p.cfg.Catalog.NodeAddress(v.Node)
	if !ok {
		return nil, status.Errorf(codes.Unavailable, "node %s has no known address", v.Node)
	}
	var resp meshnodev1.ForwardVoteResponse
	if err := p.cfg.Peers.Invoke(ctx, addr, MethodForwardVote, &meshnodev1.ForwardVoteRequest{VoterAgentId: v.AgentID, Proposal: prop}, &resp); err != nil {
		return nil, err
	}
	return resp.GetVote(), nil
}

// ReceiveVote collects a local agent's vote for a coordinator on another
// node. The wait is bounded by the proposal's deadline and by MaxVoteWait,
// whatever deadline the peer names; the hub tells the agent, and remembers
// the request, by the same bound.
func (p *Plane) ReceiveVote(ctx context.Context, fromNode string, req *meshnodev1.ForwardVoteRequest) (*meshnodev1.ForwardVoteResponse, error) {
	if !strings.HasPrefix(req.GetVoterAgentId(), p.cfg.LocalNode+"/") {
		return nil, status.Errorf(codes.NotFound, "agent %s is not attached to node %s", req.GetVoterAgentId(), p.cfg.LocalNode)
	}
	limit := p.cfg.Clock.Now().Add(p.cfg.MaxVoteWait)
	if d := req.GetProposal().GetDeadline(); d != nil && d.AsTime().Before(limit) {
		limit = d.AsTime()
	}
	ctx, cancel := context.WithDeadline(ctx, limit)
	defer cancel()
	v, err := p.cfg.Local.AskVote(ctx, req.GetVoterAgentId(), req.GetProposal(), p.cfg.ClusterID)
	if err != nil {
		return nil, err
	}
	return &meshnodev1.ForwardVoteResponse{Vote: v}, nil
}
