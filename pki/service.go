package pki

import (
	"context"
	"encoding/hex"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service implements meshnodev1.PKIServiceServer for the node's socket.
type Service struct {
	meshnodev1.UnimplementedPKIServiceServer
	ca      *CA
	creds   func() *Credentials
	renewAt func() time.Time
}

var _ meshnodev1.PKIServiceServer = (*Service)(nil)

// NewService returns the socket's PKI service. ca is nil on client nodes
// (which hold no CA): token creation and revocation then answer
// FailedPrecondition. creds returns the node's current credentials (e.g.
// Keeper.Current); renewAt, if not nil, the renewer's next attempt.
func NewService(ca *CA, creds func() *Credentials, renewAt func() time.Time) *Service {
	return &Service{ca: ca, creds: creds, renewAt: renewAt}
}

func (s *Service) needCA() error {
	if s.ca == nil {
		return status.Error(codes.FailedPrecondition, "this node holds no CA (it is a client); run the command against a server's socket")
	}
	return nil
}

// CreateToken implements PKIServiceServer.
func (s *Service) CreateToken(ctx context.Context, req *meshnodev1.CreateTokenRequest) (*meshnodev1.CreateTokenResponse, error) {
	if err := s.needCA(); err != nil {
		return nil, err
	}
	switch {
	case req.GetNodeName() == "" && !req.GetAnyName():
		return nil, status.Error(codes.InvalidArgument, "node_name: a join token names the node that will use it (--name NAME); to let any new name use it, ask for any_name (--any-name)")
	case req.GetNodeName() != "" && req.GetAnyName():
		return nil, status.Error(codes.InvalidArgument, "node_name and any_name: ask for one of them")
	case req.GetRejoin() && req.GetNodeName() == "":
		return nil, status.Error(codes.InvalidArgument, "rejoin: a re-join token needs the name it re-joins (--name NAME)")
	}
	tr := TokenRequest{Role: req.GetRole(), Node: req.GetNodeName(), Rejoin: req.GetRejoin()}
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
		}
		tr.TTL = req.GetTtl().AsDuration()
		if tr.TTL <= 0 {
			return nil, status.Errorf(codes.InvalidArgument, "ttl must be positive, got %s", tr.TTL)
		}
	}
	raw, err := s.ca.CreateToken(ctx, tr)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "creating token: %v", err)
	}
	tok, err := ParseToken(raw)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "created an unreadable token: %v", err)
	}
	return &meshnodev1.CreateTokenResponse{Token: raw, Id: tok.ID, ExpiresAt: timestamppb.New(tok.Expires)}, nil
}

// RevokeNode implements PKIServiceServer.
func (s *Service) RevokeNode(ctx context.Context, req *meshnodev1.RevokeNodeRequest) (*meshnodev1.RevokeNodeResponse, error) {
	if err := s.needCA(); err != nil {
		return nil, err
	}
	r := &Revocation{NodeName: req.GetNodeName(), Serials: req.GetSerials(), Reason: req.GetReason(), RevokedAt: timestamppb.New(s.ca.cfg.Clock.Now())}
	if err := s.ca.Revoke(ctx, r); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return &meshnodev1.RevokeNodeResponse{Revocation: r}, nil
}

// CertificateStatus implements PKIServiceServer.
func (s *Service) CertificateStatus(ctx context.Context, _ *meshnodev1.CertificateStatusRequest) (*meshnodev1.CertificateStatusResponse, error) {
	c := s.creds()
	if c == nil || len(c.Chain) == 0 {
		return nil, status.Error(codes.Unavailable, "this node has no certificate yet")
	}
	leaf := c.Leaf()
	resp := &meshnodev1.CertificateStatusResponse{
		Serial:      leaf.SerialNumber.String(),
		NotBefore:   timestamppb.New(leaf.NotBefore),
		NotAfter:    timestamppb.New(leaf.NotAfter),
		CaAvailable: s.ca != nil,
	}
	if id, err := c.ID(); err == nil {
		resp.SpiffeId = id.String()
	}
	if len(c.Roots) > 0 {
		resp.RootFingerprint = hex.EncodeToString(Fingerprint(c.Roots[0]))
	}
	if s.renewAt != nil {
		resp.RenewAt = timestamppb.New(s.renewAt())
	}
	return resp, nil
}
