package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

// Reasons a peer certificate is refused. Every refusal wraps exactly one of
// these, so callers (and tests) can branch with errors.Is.
var (
	// ErrNoPeerCertificate: the peer presented no certificate at all.
	ErrNoPeerCertificate = errors.New("peer presented no certificate")
	// ErrUnknownAuthority: the chain does not lead to the cluster's roots (a foreign CA).
	ErrUnknownAuthority = errors.New("certificate not signed by the cluster CA")
	// ErrCertExpired: the leaf's NotAfter is in the past.
	ErrCertExpired = errors.New("certificate expired")
	// ErrCertNotYetValid: the leaf's NotBefore is in the future.
	ErrCertNotYetValid = errors.New("certificate not yet valid")
	// ErrWrongTrustDomain: the SPIFFE id belongs to another cluster.
	ErrWrongTrustDomain = errors.New("certificate from another trust domain")
	// ErrKeyUsage: the leaf may not be used for this side of the handshake.
	ErrKeyUsage = errors.New("certificate key usage does not allow this use")
	// ErrRevoked: the certificate's serial or identity has been revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrUnexpectedPeer: the peer is authentic but not the one that was dialled.
	ErrUnexpectedPeer = errors.New("peer is not the expected identity")
)

// Revocations answers, on every handshake, whether a certificate is revoked.
// Implementations must answer from local memory: this runs inside the TLS
// handshake and must not block on the network or on Raft.
type Revocations interface {
	IsRevoked(serial *big.Int, id ID) bool
}

// VerifyOptions say what VerifyPeer accepts.
type VerifyOptions struct {
	// TrustDomain the peer's SPIFFE id must belong to. Required.
	TrustDomain string
	// Roots the chain must lead to. Required.
	Roots *x509.CertPool
	// Usage the leaf must allow: x509.ExtKeyUsageServerAuth when checking a
	// server (we are the client), x509.ExtKeyUsageClientAuth when checking a
	// client (we are the server).
	Usage x509.ExtKeyUsage
	// Revocations, if set, is consulted for the leaf.
	Revocations Revocations
	// Now is the verification time; zero means time.Now().
	Now time.Time
}

// VerifyPeer is the one certificate check every mTLS handshake in the mesh
// runs: chain to the cluster roots, validity period, key usage, exactly one
// SPIFFE URI SAN in the right trust domain, and revocation. It returns the
// peer's identity, or an error wrapping one of the Err* reasons above.
func VerifyPeer(chain []*x509.Certificate, opts VerifyOptions) (ID, error) {
	if len(chain) == 0 || chain[0] == nil {
		return ID{}, ErrNoPeerCertificate
	}
	if opts.Roots == nil {
		return ID{}, fmt.Errorf("%w: no trust roots configured", ErrUnknownAuthority)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	leaf := chain[0]
	if now.Before(leaf.NotBefore) {
		return ID{}, fmt.Errorf("%w: serial %s valid from %s", ErrCertNotYetValid, leaf.SerialNumber, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return ID{}, fmt.Errorf("%w: serial %s expired at %s", ErrCertExpired, leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := checkLeafUsage(leaf, opts.Usage); err != nil {
		return ID{}, err
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// EKU was checked on the leaf above with a precise error; ExtKeyUsageAny
	// keeps x509 from re-checking it along the chain with a vaguer one.
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: opts.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return ID{}, fmt.Errorf("%w: serial %s: %v", ErrUnknownAuthority, leaf.SerialNumber, err)
	}
	id, err := IDFromCert(leaf)
	if err != nil {
		return ID{}, err
	}
	if id.TrustDomain != opts.TrustDomain {
		return id, fmt.Errorf("%w: %s, want trust domain %q", ErrWrongTrustDomain, id, opts.TrustDomain)
	}
	if opts.Revocations != nil && opts.Revocations.IsRevoked(leaf.SerialNumber, id) {
		return id, fmt.Errorf("%w: %s serial %s", ErrRevoked, id, leaf.SerialNumber)
	}
	return id, nil
}

func checkLeafUsage(leaf *x509.Certificate, want x509.ExtKeyUsage) error {
	if leaf.IsCA {
		return fmt.Errorf("%w: serial %s is a CA certificate, not a workload one", ErrKeyUsage, leaf.SerialNumber)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%w: serial %s lacks digitalSignature", ErrKeyUsage, leaf.SerialNumber)
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == want {
			return nil
		}
	}
	return fmt.Errorf("%w: serial %s lacks extended key usage %s", ErrKeyUsage, leaf.SerialNumber, ekuName(want))
}

func ekuName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	}
	return fmt.Sprintf("eku(%d)", int(u))
}

// TLSSourceConfig configures a TLSSource. Roots and Certificate are
// functions so that rotated certificates and roots take effect on the next
// handshake without rebuilding any tls.Config.
type TLSSourceConfig struct {
	// TrustDomain peers must belong to. Required.
	TrustDomain string
	// Roots returns the current trust roots. Required.
	Roots func() *x509.CertPool
	// Certificate returns the current leaf and chain. Required. Called on
	// every handshake, so it must be cheap (return a cached pointer).
	Certificate func() (*tls.Certificate, error)
	// Revocations, if set, is consulted on every handshake.
	Revocations Revocations
	// Clock is the verification time source; nil means clock.System.
	Clock clock.Clock
	// Logger receives the refused handshakes: at most one line per peer
	// identity per RefusalLogInterval, with the count of those left out;
	// nil means slog.Default().
	Logger *slog.Logger
	// RefusalLogInterval is the least time between two logged refusals of
	// one peer; zero means a minute. A revoked node retries several times a
	// second, and each server would log each attempt.
	RefusalLogInterval time.Duration
}

// Validate reports the first missing or inconsistent field.
func (c *TLSSourceConfig) Validate() error {
	switch {
	case c.TrustDomain == "":
		return errors.New("pki: TLSSourceConfig.TrustDomain is required")
	case c.Roots == nil:
		return errors.New("pki: TLSSourceConfig.Roots is required")
	case c.Certificate == nil:
		return errors.New("pki: TLSSourceConfig.Certificate is required")
	}
	return nil
}

// TLSSource builds the tls.Configs of mesh peer connections: TLS 1.3 only,
// both sides authenticated by VerifyPeer (SPIFFE style: identities, not
// hostnames). One source serves every connection; it is safe for
// concurrent use.
type TLSSource struct {
	cfg      TLSSourceConfig
	log      *slog.Logger
	refusals refusalLog
}

// NewTLSSource validates cfg and returns a source.
func NewTLSSource(cfg TLSSourceConfig) (*TLSSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Clock = clock.OrSystem(cfg.Clock)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.RefusalLogInterval <= 0 {
		cfg.RefusalLogInterval = time.Minute
	}
	return &TLSSource{cfg: cfg, log: log.With("component", "pki.tls"), refusals: refusalLog{last: map[string]*refusalEntry{}}}, nil
}

// ServerConfig is the config of the accepting side: it requires a client
// certificate and checks it with VerifyPeer for ClientAuth. Callers may set
// NextProtos and limits on the returned config; it is a fresh copy.
func (s *TLSSource) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// RequireAnyClientCert: crypto/tls would verify against hostnames
		// and ClientCAs; we verify ourselves in VerifyConnection instead.
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cfg.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(cs, x509.ExtKeyUsageClientAuth, "client", nil)
			return err
		},
	}
}

// ClientConfig is the config of the dialling side: it presents the node
// certificate and checks the server's with VerifyPeer for ServerAuth.
func (s *TLSSource) ClientConfig() *tls.Config { return s.clientConfig(nil) }

// ClientConfigFor is ClientConfig that additionally requires the server to
// be exactly want (e.g. the node the caller meant to dial).
func (s *TLSSource) ClientConfigFor(want ID) *tls.Config { return s.clientConfig(&want) }

func (s *TLSSource) clientConfig(want *ID) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// No hostname verification: identities are SPIFFE ids checked in
		// VerifyConnection, which crypto/tls still calls.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cfg.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(cs, x509.ExtKeyUsageServerAuth, "server", want)
			return err
		},
	}
}

// Verify runs VerifyPeer on a completed connection's peer chain with this
// source's roots, trust domain, revocations and clock.
func (s *TLSSource) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (ID, error) {
	return VerifyPeer(chain, VerifyOptions{
		TrustDomain: s.cfg.TrustDomain,
		Roots:       s.cfg.Roots(),
		Usage:       usage,
		Revocations: s.cfg.Revocations,
		Now:         s.cfg.Clock.Now(),
	})
}

func (s *TLSSource) verify(cs tls.ConnectionState, usage x509.ExtKeyUsage, side string, want *ID) (ID, error) {
	id, err := s.Verify(cs.PeerCertificates, usage)
	if err == nil && want != nil && id != *want {
		err = fmt.Errorf("%w: got %s, want %s", ErrUnexpectedPeer, id, *want)
	}
	if err != nil {
		if log, suppressed := s.refusals.admit(refusalKey(id, cs.PeerCertificates), s.cfg.Clock.Now(), s.cfg.RefusalLogInterval); log {
			attrs := []any{"peer_side", side, "err", err}
			if !id.IsZero() {
				attrs = append(attrs, "peer", id.String())
			}
			if suppressed > 0 {
				attrs = append(attrs, "suppressed", suppressed, "suppressed_over", s.cfg.RefusalLogInterval)
			}
			s.log.Warn("refused peer certificate", attrs...)
		}
		return id, fmt.Errorf("pki: refusing %s certificate: %w", side, err)
	}
	return id, nil
}

// refusalKey names the peer a refusal is counted against: its identity when
// the certificate has one, else its serial, else nothing (all anonymous
// peers share one count).
func refusalKey(id ID, chain []*x509.Certificate) string {
	switch {
	case !id.IsZero():
		return id.String()
	case len(chain) > 0 && chain[0] != nil && chain[0].SerialNumber != nil:
		return "serial:" + chain[0].SerialNumber.String()
	}
	return "anonymous"
}

// refusalLog rate-limits refusal lines per peer key.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]*refusalEntry
}

type refusalEntry struct {
	at         time.Time // when a line for this key was last written
	suppressed int       // refusals left out since
}

// maxRefusalKeys bounds the memory a flood of distinct certificates can
// take; past it, entries older than the interval are dropped.
const maxRefusalKeys = 4096

// admit reports whether a refusal of key at now gets a line, and how many
// refusals of key were left out since the previous line.
func (r *refusalLog) admit(key string, now time.Time, every time.Duration) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.last[key]
	if ok && now.Sub(e.at) < every {
		e.suppressed++
		return false, 0
	}
	if !ok {
		if len(r.last) >= maxRefusalKeys {
			for k, old := range r.last {
				if now.Sub(old.at) >= every {
					delete(r.last, k)
				}
			}
		}
		if len(r.last) >= maxRefusalKeys {
			return false, 0 // a flood: its lines would say nothing new
		}
		e = &refusalEntry{}
		r.last[key] = e
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	return true, n
}

// PeerID returns the identity of a connection already verified by a
// TLSSource config. It does not re-verify.
func PeerID(cs tls.ConnectionState) (ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return ID{}, ErrNoPeerCertificate
	}
	return IDFromCert(cs.PeerCertificates[0])
}
