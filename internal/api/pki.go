package api

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pkiService serves PKIService. The CA is looked up per call: a server that
// joined gets the CA material by replication, after start.
type pkiService struct {
	meshnodev1.UnimplementedPKIServiceServer
	node    string
	service func(ctx context.Context, needCA bool) (*pki.Service, error)
	store   *consensus.Store
	log     *slog.Logger
}

// CreateToken mints a join token for an admin and records it in the log
// with the signed request: the state machine checks the signature and the
// token's terms against it, spends the nonce cluster-wide, and from then on
// refuses a join with any token it did not record. The token is returned
// only once that record is committed.
func (s *pkiService) CreateToken(ctx context.Context, req *meshnodev1.CreateTokenRequest) (*meshnodev1.CreateTokenResponse, error) {
	svc, err := s.service(ctx, true)
	if err != nil {
		return nil, err
	}
	cmd, err := adminCommand(ctx, func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_CreateToken{CreateToken: req}
		a.IssuedToken = &meshnodev1.IssuedToken{Id: "pending"}
	})
	if err != nil {
		return nil, err
	}
	// Refuse a bad signature before minting anything.
	if err := s.store.VerifyAdmin(cmd, time.Now()); err != nil {
		return nil, apierror.Wrap("create token", err)
	}
	resp, err := svc.CreateToken(ctx, req)
	if err != nil {
		return nil, err
	}
	role := req.GetRole()
	if role == meshnodev1.JoinRole_JOIN_ROLE_UNSPECIFIED {
		role = meshnodev1.JoinRole_JOIN_ROLE_CLIENT
	}
	cmd.IssuedToken = &meshnodev1.IssuedToken{Id: resp.GetId(), NodeName: req.GetNodeName(), Role: role, Rejoin: req.GetRejoin(), ExpiresAt: resp.GetExpiresAt()}
	wctx, cancel := boundWrite(ctx)
	defer cancel()
	if _, err := s.store.Admin(wctx, cmd); err != nil {
		return nil, apierror.Wrap("create token", err)
	}
	return resp, nil
}

// ListTokens lists the issued tokens this node's replica holds.
func (s *pkiService) ListTokens(ctx context.Context, _ *meshnodev1.ListTokensRequest) (*meshnodev1.ListTokensResponse, error) {
	toks, _, err := s.store.IssuedTokens(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil, apierror.Wrap("list tokens", err)
	}
	return &meshnodev1.ListTokensResponse{Tokens: toks}, nil
}

// RevokeToken stops an issued token from admitting anyone.
func (s *pkiService) RevokeToken(ctx context.Context, req *meshnodev1.RevokeTokenRequest) (*meshnodev1.RevokeTokenResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: name the token to revoke (meshnode token list shows the ids)")
	}
	idx, by, err := submitAdmin(ctx, s.store, "revoke token "+req.GetId(), func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_RevokeToken{RevokeToken: req}
	})
	if err != nil {
		return nil, err
	}
	s.log.Warn("join token revoked", "token_id", req.GetId(), "operator", by, "index", idx)
	if err := s.store.WaitApplied(ctx, idx); err != nil {
		return nil, apierror.Wrap("revoke token "+req.GetId(), err)
	}
	toks, _, err := s.store.IssuedTokens(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil, apierror.Wrap("revoke token "+req.GetId(), err)
	}
	for _, t := range toks {
		if t.GetId() == req.GetId() {
			return &meshnodev1.RevokeTokenResponse{Token: t}, nil
		}
	}
	return &meshnodev1.RevokeTokenResponse{}, nil
}

// RemoveNode forgets a node that is gone, and its agents.
func (s *pkiService) RemoveNode(ctx context.Context, req *meshnodev1.RemoveNodeRequest) (*meshnodev1.RemoveNodeResponse, error) {
	if req.GetNodeName() == "" {
		return nil, status.Error(codes.InvalidArgument, "node_name: name the node to remove (meshnode members lists them)")
	}
	if req.GetNodeName() == s.node {
		return nil, status.Errorf(codes.InvalidArgument, "node %s cannot remove itself; stop it and run the command on another node", s.node)
	}
	cmd, err := adminCommand(ctx, func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_RemoveNode{RemoveNode: req}
	})
	if err != nil {
		return nil, err
	}
	wctx, cancel := boundWrite(ctx)
	defer cancel()
	idx, res, err := s.store.AdminResult(wctx, cmd)
	if err != nil {
		return nil, apierror.Wrap("remove node "+req.GetNodeName(), err)
	}
	n := res.GetAgentsRemoved()
	s.log.Warn("node removed from the registry", "node", req.GetNodeName(), "agents", n, "operator", cmd.GetSignature().GetOperator(), "index", idx)
	return &meshnodev1.RemoveNodeResponse{AgentsRemoved: n, Index: idx}, nil
}

func (s *pkiService) RevokeNode(ctx context.Context, req *meshnodev1.RevokeNodeRequest) (*meshnodev1.RevokeNodeResponse, error) {
	if req.GetNodeName() == s.node {
		return nil, status.Errorf(codes.InvalidArgument, "node %s cannot revoke itself; run the command on another server", s.node)
	}
	idx, by, err := submitAdmin(ctx, s.store, "revoke "+req.GetNodeName(), func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_RevokeNode{RevokeNode: req}
	})
	if err != nil {
		return nil, err
	}
	s.log.Warn("node revoked: new handshakes from it are refused", "node", req.GetNodeName(), "reason", req.GetReason(), "operator", by, "index", idx)
	return &meshnodev1.RevokeNodeResponse{Revocation: &meshnodev1.Revocation{NodeName: req.GetNodeName(), Serials: req.GetSerials(), Reason: req.GetReason(), Operator: by}}, nil
}

func (s *pkiService) CertificateStatus(ctx context.Context, req *meshnodev1.CertificateStatusRequest) (*meshnodev1.CertificateStatusResponse, error) {
	svc, err := s.service(ctx, false)
	if err != nil {
		return nil, err
	}
	return svc.CertificateStatus(ctx, req)
}
