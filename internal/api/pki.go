package api

import (
	"context"
	"log/slog"

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
	log     *slog.Logger
}

func (s *pkiService) CreateToken(ctx context.Context, req *meshnodev1.CreateTokenRequest) (*meshnodev1.CreateTokenResponse, error) {
	svc, err := s.service(ctx, true)
	if err != nil {
		return nil, err
	}
	return svc.CreateToken(ctx, req)
}

func (s *pkiService) RevokeNode(ctx context.Context, req *meshnodev1.RevokeNodeRequest) (*meshnodev1.RevokeNodeResponse, error) {
	if req.GetNodeName() == s.node {
		return nil, status.Errorf(codes.InvalidArgument, "node %s cannot revoke itself; run the command on another server", s.node)
	}
	svc, err := s.service(ctx, true)
	if err != nil {
		return nil, err
	}
	resp, err := svc.RevokeNode(ctx, req)
	if err == nil {
		s.log.Warn("node revoked: new handshakes from it are refused", "node", req.GetNodeName(), "reason", req.GetReason())
	}
	return resp, err
}

func (s *pkiService) CertificateStatus(ctx context.Context, req *meshnodev1.CertificateStatusRequest) (*meshnodev1.CertificateStatusResponse, error) {
	svc, err := s.service(ctx, false)
	if err != nil {
		return nil, err
	}
	return svc.CertificateStatus(ctx, req)
}
