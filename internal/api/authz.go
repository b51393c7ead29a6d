package api

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/authz"
	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	"github.com/agentmesh/meshnode/internal/authzgate"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// authzService sets, reads and checks the authorization policy.
type authzService struct {
	meshnodev1.UnimplementedAuthzServiceServer
	cfg  Config
	gate *authzgate.Gate
}

// SetAuthzPolicy replaces the policy: a policy operator's admin command,
// validated here for a quick answer and again by the state machine, which
// decides.
func (s *authzService) SetAuthzPolicy(ctx context.Context, req *meshnodev1.SetAuthzPolicyRequest) (*meshnodev1.SetAuthzPolicyResponse, error) {
	if req.GetPolicy() == nil {
		return nil, status.Error(codes.InvalidArgument, "policy: required")
	}
	if err := authz.Validate(req.GetPolicy()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	idx, by, err := submitAdmin(ctx, s.cfg.Store, "set the authorization policy", func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_SetAuthzPolicy{SetAuthzPolicy: req}
	})
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.WaitApplied(ctx, idx); err != nil {
		return nil, apierror.Wrap("set authorization policy", err)
	}
	p := req.GetPolicy()
	s.cfg.Logger.Info("authorization policy set", "mode", p.GetMode(), "bindings", len(p.GetBindings()), "call_rules", len(p.GetCallRules()),
		"serve_rules", len(p.GetServeRules()), "source", p.GetSource(), "operator", by, "index", idx)
	return &meshnodev1.SetAuthzPolicyResponse{Index: idx}, nil
}

// GetAuthzPolicy returns the stored policy, if any.
func (s *authzService) GetAuthzPolicy(ctx context.Context, _ *meshnodev1.GetAuthzPolicyRequest) (*meshnodev1.GetAuthzPolicyResponse, error) {
	rec, err := s.cfg.Store.AuthzPolicy(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil, apierror.Wrap("get authorization policy", err)
	}
	return &meshnodev1.GetAuthzPolicyResponse{Record: rec}, nil
}

// CheckAuthz decides one call under the policy this node enforces.
func (s *authzService) CheckAuthz(ctx context.Context, req *meshnodev1.CheckAuthzRequest) (*meshnodev1.CheckAuthzResponse, error) {
	if req.GetCapability() == "" {
		return nil, status.Error(codes.InvalidArgument, "capability: must not be empty")
	}
	d, roles, err := s.gate.Check(ctx, req.GetFromAgent(), req.GetCapability(), req.GetToAgent())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "checking authorization: %v", err)
	}
	return &meshnodev1.CheckAuthzResponse{Allowed: d.Allowed, Rule: d.Rule, CallerRoles: roles}, nil
}
