package api

import (
	"context"
	"errors"
	"log/slog"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// policyService serves PolicyService: routing policies per capability, with
// "*" as the default for every capability without its own.
type policyService struct {
	meshnodev1.UnimplementedPolicyServiceServer
	store *consensus.Store
	log   *slog.Logger
}

func policyKey(capability string) string { return consensus.PolicyKey(capability) }

// GetPolicy returns the policy stored for the capability, else the "*"
// one, and the effective policy (defaults filled in).
func (s *policyService) GetPolicy(ctx context.Context, req *meshnodev1.GetPolicyRequest) (*meshnodev1.GetPolicyResponse, error) {
	opts := readOpts(req.GetConsistency())
	resp := &meshnodev1.GetPolicyResponse{}
	keys := []string{policyKey(req.GetCapability())}
	if keys[0] != "*" {
		keys = append(keys, "*")
	}
	for _, key := range keys {
		rec, idx, err := s.store.Policy(ctx, opts, key)
		resp.Index = idx
		if errors.Is(err, consensus.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, apierror.Wrap("read policy", err)
		}
		p := &meshnodev1.RoutingPolicy{}
		if err := proto.Unmarshal(rec.GetPolicy(), p); err != nil {
			return nil, status.Errorf(codes.Internal, "stored policy %q is corrupt: %v", key, err)
		}
		resp.Policy, resp.Source = p, key
		break
	}
	pol := routing.DefaultPolicy()
	if resp.Policy != nil {
		var err error
		if pol, err = routing.PolicyFromProto(resp.Policy); err != nil {
			return nil, status.Errorf(codes.Internal, "stored policy %q is invalid: %v", resp.Source, err)
		}
	} else {
		resp.Policy = &meshnodev1.RoutingPolicy{Capability: policyKey(req.GetCapability())}
	}
	resp.Effective = pol.ToProto()
	resp.Effective.Capability = policyKey(req.GetCapability())
	return resp, nil
}

// SetPolicy validates and stores a policy; a refused one leaves the policy
// in force unchanged.
func (s *policyService) SetPolicy(ctx context.Context, req *meshnodev1.SetPolicyRequest) (*meshnodev1.SetPolicyResponse, error) {
	p := req.GetPolicy()
	if p == nil {
		return nil, status.Error(codes.InvalidArgument, "policy: must be set")
	}
	if err := routing.Validate(p); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "policy refused, the one in force is unchanged: %v", err)
	}
	pol, err := routing.PolicyFromProto(p)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "policy refused, the one in force is unchanged: %v", err)
	}
	key := policyKey(p.GetCapability())
	idx, _, err := submitAdmin(ctx, s.store, "store policy "+key, func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_SetPolicy{SetPolicy: req}
	})
	if err != nil {
		return nil, err
	}
	if err := s.awaitApplied(ctx, "policy for "+key, idx); err != nil {
		return nil, err
	}
	eff := pol.ToProto()
	eff.Capability = key
	s.log.Info("routing policy set", "capability", key, "policy", eff.GetPolicy(), "index", idx)
	return &meshnodev1.SetPolicyResponse{Effective: eff, Index: idx}, nil
}

// ListPolicies returns every stored policy, sorted by capability.
func (s *policyService) ListPolicies(ctx context.Context, req *meshnodev1.ListPoliciesRequest) (*meshnodev1.ListPoliciesResponse, error) {
	recs, idx, err := s.store.Policies(ctx, readOpts(req.GetConsistency()))
	if err != nil {
		return nil, apierror.Wrap("list policies", err)
	}
	resp := &meshnodev1.ListPoliciesResponse{Index: idx}
	for _, rec := range recs {
		p := &meshnodev1.RoutingPolicy{}
		if err := proto.Unmarshal(rec.GetPolicy(), p); err != nil {
			return nil, status.Errorf(codes.Internal, "stored policy %q is corrupt: %v", rec.GetKey(), err)
		}
		p.Capability = rec.GetKey()
		resp.Policies = append(resp.Policies, p)
	}
	return resp, nil
}

// DeletePolicy removes a stored policy; NotFound when there is none.
func (s *policyService) DeletePolicy(ctx context.Context, req *meshnodev1.DeletePolicyRequest) (*meshnodev1.DeletePolicyResponse, error) {
	key := policyKey(req.GetCapability())
	idx, _, err := submitAdmin(ctx, s.store, "delete policy "+key, func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_DeletePolicy{DeletePolicy: req}
	})
	if err != nil {
		return nil, err
	}
	if err := s.awaitApplied(ctx, "deletion of the policy for "+key, idx); err != nil {
		return nil, err
	}
	s.log.Info("routing policy deleted", "capability", key, "index", idx)
	return &meshnodev1.DeletePolicyResponse{Index: idx}, nil
}

// awaitApplied holds the answer to a policy write until this node applies
// it: a write through a follower or client is committed before its replica
// applies it, and calls routed here in between would still see the old
// policy. An answer therefore means "in force here". The wait ends with the
// request; the write stays committed, and the error says so.
func (s *policyService) awaitApplied(ctx context.Context, what string, idx uint64) error {
	if err := s.store.WaitApplied(ctx, idx); err != nil {
		return status.Errorf(codes.DeadlineExceeded, "%s committed at index %d, but this node has not applied it yet (it is at index %d): %v; it takes effect here once applied",
			what, idx, s.store.Index(), err)
	}
	return nil
}
