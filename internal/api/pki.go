package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	"github.com/agentmesh/meshnode/operator"

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
	nonces  *nonceCache
	log     *slog.Logger
}

// CreateToken mints a join token for an admin. It writes no Raft state, so
// this server judges the signed command itself, as the state machine would,
// and remembers its nonce until it expires.
func (s *pkiService) CreateToken(ctx context.Context, req *meshnodev1.CreateTokenRequest) (*meshnodev1.CreateTokenResponse, error) {
	svc, err := s.service(ctx, true)
	if err != nil {
		return nil, err
	}
	cmd, err := adminCommand(ctx, func(*meshnodev1.AdminCommand) {})
	if err != nil {
		return nil, err
	}
	if err := s.store.VerifyCreateToken(cmd.GetSignature(), req, time.Now()); err != nil {
		return nil, apierror.Wrap("create token", err)
	}
	if !s.nonces.use(operator.NonceKey(cmd.GetSignature()), operator.Expiry(cmd.GetSignature())) {
		return nil, status.Error(codes.PermissionDenied, "create token: this signed command was already used (nonce seen); sign it again")
	}
	return svc.CreateToken(ctx, req)
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

// nonceCache remembers the nonces of signed commands this server executed
// without Raft, until they expire.
type nonceCache struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func newNonceCache() *nonceCache { return &nonceCache{seen: map[string]time.Time{}} }

// use records key and reports whether it was new.
func (c *nonceCache) use(key string, expires time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, exp := range c.seen {
		if exp.Before(now) {
			delete(c.seen, k)
		}
	}
	if _, dup := c.seen[key]; dup {
		return false
	}
	c.seen[key] = expires
	return true
}
