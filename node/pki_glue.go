package node

import (
	"context"
	"time"

	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pkiService serves PKIService on the socket. The CA is looked up per call:
// a server that joined gets the CA material by replication, after start.
type pkiService struct {
	meshnodev1.UnimplementedPKIServiceServer
	n *Node
}

func (s *pkiService) service(ctx context.Context, needCA bool) (*pki.Service, error) {
	var ca *pki.CA
	if needCA {
		var err error
		if ca, err = s.n.ca(ctx); err != nil {
			return nil, err
		}
	}
	return pki.NewService(ca, s.n.keeper.Current, s.n.renewAt), nil
}

func (s *pkiService) CreateToken(ctx context.Context, req *meshnodev1.CreateTokenRequest) (*meshnodev1.CreateTokenResponse, error) {
	svc, err := s.service(ctx, true)
	if err != nil {
		return nil, err
	}
	return svc.CreateToken(ctx, req)
}

func (s *pkiService) RevokeNode(ctx context.Context, req *meshnodev1.RevokeNodeRequest) (*meshnodev1.RevokeNodeResponse, error) {
	if req.GetNodeName() == s.n.cfg.Name {
		return nil, status.Errorf(codes.InvalidArgument, "node %s cannot revoke itself; run the command on another server", s.n.cfg.Name)
	}
	svc, err := s.service(ctx, true)
	if err != nil {
		return nil, err
	}
	resp, err := svc.RevokeNode(ctx, req)
	if err == nil {
		s.n.log.Warn("node revoked: new handshakes from it are refused", "node", req.GetNodeName(), "reason", req.GetReason())
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

func (n *Node) renewAt() time.Time {
	if n.renewer == nil {
		return time.Time{}
	}
	return n.renewer.RenewAt()
}

// startRenewal renews the node certificate at 2/3 of its life from any
// server that answers.
func (n *Node) startRenewal(context.Context) error {
	r, err := pki.NewRenewer(pki.RenewerConfig{
		Current:  n.keeper.Current,
		Renew:    n.renewFromServers,
		OnRotate: n.keeper.Rotate,
		Logger:   n.log.With("component", "pki.renewal"),
	})
	if err != nil {
		return err
	}
	n.renewer = r
	n.goBackground(func(ctx context.Context) {
		if err := r.Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("certificate renewal stopped", "err", err)
		}
	})
	return nil
}

func (n *Node) renewFromServers(ctx context.Context, req *meshnodev1.RenewRequest) (*meshnodev1.RenewResponse, error) {
	var addrs []string
	for _, s := range n.servers(ctx) {
		if s.Address != "" {
			addrs = append(addrs, s.Address)
		}
	}
	addrs = append(addrs, n.cfg.Join...)
	if n.isServer() {
		addrs = append([]string{n.ep.Addr().String()}, addrs...)
	}
	var last error = status.Error(codes.Unavailable, "no server address known")
	for _, a := range addrs {
		var resp meshnodev1.RenewResponse
		if err := transport.Invoke(ctx, n.ep, a, methodRenew, req, &resp); err != nil {
			last = err
			continue
		}
		return &resp, nil
	}
	return nil, last
}
