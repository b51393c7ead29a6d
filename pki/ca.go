package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/agentmesh/meshnode/internal/clock"
)

const (
	// DefaultCertLifetime is how long node certificates live by default.
	DefaultCertLifetime = 24 * time.Hour
	// MinCertLifetime is the shortest lifetime allowed (tests use it).
	MinCertLifetime = 5 * time.Minute
	// backdate tolerates peers whose clocks run a little behind the CA's.
	backdate = time.Minute
)

// CAConfig configures a CA.
type CAConfig struct {
	// TrustDomain the CA issues for; must match the stored material. Required.
	TrustDomain string
	// Store holds the CA material, used tokens and revocations. Required.
	Store Store
	// CertLifetime of issued node certificates; zero means DefaultCertLifetime.
	CertLifetime time.Duration
	// Clock dates tokens, certificates and revocations; nil means
	// clock.System.
	Clock clock.Clock
	// Logger receives one line per issued certificate and per refusal; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultCAConfig returns a config with every default filled in; the caller
// sets TrustDomain and Store.
func DefaultCAConfig() CAConfig {
	return CAConfig{CertLifetime: DefaultCertLifetime, Clock: clock.System{}, Logger: slog.Default()}
}

// Validate reports the first missing or inconsistent field.
func (c *CAConfig) Validate() error {
	if err := ValidateTrustDomain(c.TrustDomain); err != nil {
		return fmt.Errorf("pki: CAConfig.TrustDomain: %w", err)
	}
	if c.Store == nil {
		return errors.New("pki: CAConfig.Store is required")
	}
	if c.CertLifetime != 0 && c.CertLifetime < MinCertLifetime {
		return fmt.Errorf("pki: CAConfig.CertLifetime %s is below the minimum %s", c.CertLifetime, MinCertLifetime)
	}
	return nil
}

// CA issues node certificates and join tokens from material in a Store.
// Several CA values over one shared store (one per server; whichever leads
// signs) behave as one CA: used tokens and revocations live in the store.
type CA struct {
	cfg CAConfig
	log *slog.Logger

	mu sync.RWMutex
	s  *signer
}

// NewCA loads the CA material from cfg.Store. It fails with an error
// wrapping ErrNotFound when the store holds none (a client node, or a
// cluster not bootstrapped: see Bootstrap).
func NewCA(ctx context.Context, cfg CAConfig) (*CA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := DefaultCAConfig()
	if cfg.CertLifetime == 0 {
		cfg.CertLifetime = d.CertLifetime
	}
	if cfg.Clock == nil {
		cfg.Clock = d.Clock
	}
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	ca := &CA{cfg: cfg, log: cfg.Logger.With("component", "pki.ca")}
	if err := ca.Reload(ctx); err != nil {
		return nil, err
	}
	return ca, nil
}

// Reload re-reads the CA material from the store (after a root rotation, or
// when a server learns the material through Raft).
func (ca *CA) Reload(ctx context.Context) error {
	m, err := ca.cfg.Store.LoadCA(ctx)
	if err != nil {
		return fmt.Errorf("pki: loading CA material for %s: %w", ca.cfg.TrustDomain, err)
	}
	s, err := decodeMaterial(m)
	if err != nil {
		return err
	}
	if s.td != ca.cfg.TrustDomain {
		return fmt.Errorf("pki: stored CA material is for trust domain %q, configured %q", s.td, ca.cfg.TrustDomain)
	}
	ca.mu.Lock()
	ca.s = s
	ca.mu.Unlock()
	return nil
}

func (ca *CA) signer() *signer {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.s
}

// TrustDomain returns the trust domain the CA issues for.
func (ca *CA) TrustDomain() string { return ca.cfg.TrustDomain }

// Roots returns the trusted roots, current first.
func (ca *CA) Roots() []*x509.Certificate {
	return append([]*x509.Certificate(nil), ca.signer().roots...)
}

// RootFingerprint is the SHA-256 of the current root's DER (what tokens carry).
func (ca *CA) RootFingerprint() []byte { return append([]byte(nil), ca.signer().rootFP...) }

// Revocations exposes the store's revocation index for TLSSource.
func (ca *CA) Revocations() Revocations { return ca.cfg.Store }

// CreateToken makes a one-time join token. Only the CA (a server) can.
func (ca *CA) CreateToken(ctx context.Context, req TokenRequest) (string, error) {
	raw, tok, err := signToken(ca.signer(), req, ca.cfg.Clock.Now())
	if err != nil {
		return "", err
	}
	ca.log.Info("created join token", "token_id", tok.ID, "role", roleName(tok.Role), "bound_name", tok.Node, "expires", tok.Expires)
	return raw, nil
}

// Revoke records a revocation of node name (and/or serials) in the store.
func (ca *CA) Revoke(ctx context.Context, r *Revocation) error {
	if r.GetNodeName() == "" && len(r.GetSerials()) == 0 {
		return errors.New("pki: revocation names neither a node nor a serial")
	}
	if r.GetNodeName() != "" {
		if err := ValidateName(r.GetNodeName()); err != nil {
			return fmt.Errorf("pki: revoking node: %w", err)
		}
	}
	if err := ca.cfg.Store.Revoke(ctx, r); err != nil {
		return fmt.Errorf("pki: recording revocation of %q: %w", r.GetNodeName(), err)
	}
	ca.log.Warn("revoked", "node", r.GetNodeName(), "serials", r.GetSerials(), "reason", r.GetReason())
	return nil
}

// nodeLeafTemplate is the x509util template of every node certificate:
// exactly the SANs the CA computed (never the CSR's), digitalSignature,
// serverAuth+clientAuth (a node both accepts and dials), not a CA.
const nodeLeafTemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["serverAuth", "clientAuth"],
	"basicConstraints": {"isCA": false}
}`

// ServerRole is the organizational unit the CA writes into the certificates
// of admitted servers, and only theirs. A joiner sends its token only to a
// server, and only servers speak Raft: both check this mark, which a
// client's certificate cannot carry.
const ServerRole = "meshnode-server"

// IsServerCert reports whether leaf carries the server role.
func IsServerCert(leaf *x509.Certificate) bool {
	return leaf != nil && slices.Contains(leaf.Subject.OrganizationalUnit, ServerRole)
}

// issue signs csr's public key for id, with the server role when server.
// The CSR must already be checked.
func (ca *CA) issue(s *signer, csr *x509.CertificateRequest, id ID, server bool) ([]*x509.Certificate, error) {
	cn := id.Node
	if id.Kind == KindAgent {
		cn = id.Node + "/" + id.Agent
	}
	c, err := x509util.NewCertificate(csr, x509util.WithTemplate(nodeLeafTemplate,
		x509util.CreateTemplateData(cn, []string{id.String()})))
	if err != nil {
		return nil, fmt.Errorf("pki: certificate template for %s: %w", id, err)
	}
	tmpl := c.GetCertificate()
	tmpl.Subject.OrganizationalUnit = nil
	if server {
		tmpl.Subject.OrganizationalUnit = []string{ServerRole}
	}
	now := ca.cfg.Clock.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-backdate), now.Add(ca.cfg.CertLifetime)
	if tmpl.NotAfter.After(s.chain[0].NotAfter) {
		tmpl.NotAfter = s.chain[0].NotAfter
	}
	leaf, err := x509util.CreateCertificate(tmpl, s.chain[0], csr.PublicKey, s.key)
	if err != nil {
		return nil, fmt.Errorf("pki: signing certificate for %s: %w", id, err)
	}
	out := []*x509.Certificate{leaf}
	out = append(out, s.chain...)
	ca.log.Info("issued certificate", "id", id.String(), "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
	return out, nil
}
