package api

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// operatorService serves OperatorService. Writes are admin commands the
// state machine verifies; reads are open (records hold public keys only).
type operatorService struct {
	meshnodev1.UnimplementedOperatorServiceServer
	store *consensus.Store
	log   *slog.Logger
}

func (s *operatorService) PutOperator(ctx context.Context, req *meshnodev1.PutOperatorRequest) (*meshnodev1.PutOperatorResponse, error) {
	idx, by, err := submitAdmin(ctx, s.store, "put operator", func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_PutOperator{PutOperator: req}
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("operator record stored", "by", by, "index", idx)
	return &meshnodev1.PutOperatorResponse{Index: idx}, nil
}

func (s *operatorService) ListOperators(ctx context.Context, _ *meshnodev1.ListOperatorsRequest) (*meshnodev1.ListOperatorsResponse, error) {
	bundle, _, err := s.store.TrustBundle(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil, apierror.Wrap("read the trust bundle", err)
	}
	recs, _, err := s.store.Operators(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil, apierror.Wrap("list operators", err)
	}
	all := operator.Records{}
	for _, r := range recs {
		all[r.GetName()] = r.GetSigned()
	}
	now := time.Now()
	resp := &meshnodev1.ListOperatorsResponse{}
	first := operator.FirstAdminRecord(bundle)
	if _, stored := all[first.GetName()]; !stored {
		resp.Operators = append(resp.Operators, &meshnodev1.OperatorInfo{Record: first})
	}
	for _, r := range recs {
		info := &meshnodev1.OperatorInfo{Signed: r.GetSigned()}
		rec, err := operator.VerifyChain(bundle, all, r.GetName(), now)
		if err != nil {
			info.Problem = err.Error()
			rec, _ = operator.OpenRecord(r.GetSigned())
		}
		info.Record = rec
		resp.Operators = append(resp.Operators, info)
	}
	return resp, nil
}

func (s *operatorService) GetTrustBundle(ctx context.Context, _ *meshnodev1.GetTrustBundleRequest) (*meshnodev1.GetTrustBundleResponse, error) {
	bundle, _, err := s.store.TrustBundle(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil, apierror.Wrap("read the trust bundle", err)
	}
	return &meshnodev1.GetTrustBundleResponse{Bundle: bundle, ClusterId: consensus.ClusterID(bundle)}, nil
}
