// Package transporttest provides a test CA, TLS providers and endpoints on
// 127.0.0.1 for tests of packages that run on transport (consensus,
// gossip, node). Verification is pki's (pki.NewTLSSource), so tests see the
// same refusal rules as production.
package transporttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/transport"
)

// TrustDomain is the trust domain NewEndpoint uses.
const TrustDomain = "test.meshnode"

// CA is a throwaway ECDSA P-256 certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	Pool *x509.CertPool
}

var (
	sharedOnce sync.Once
	shared     *CA
	serial     atomic.Int64
)

// SharedCA is the process-wide test root that NewTLS and NewEndpoint trust.
func SharedCA() *CA {
	sharedOnce.Do(func() {
		ca, err := newCA("meshnode test root")
		if err != nil {
			panic(err)
		}
		shared = ca
	})
	return shared
}

// NewCA returns a fresh, unrelated CA (a "foreign" CA in refusal tests).
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := newCA(name)
	if err != nil {
		t.Fatalf("creating test CA: %v", err)
	}
	return ca
}

func newCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool}, nil
}

// Leaf describes a leaf certificate to issue. Zero fields get node
// defaults: valid from an hour ago for a day, digitalSignature, both
// serverAuth and clientAuth (a node is both).
type Leaf struct {
	URIs        []*url.URL
	NotBefore   time.Time
	NotAfter    time.Time
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
}

// Issue signs a leaf and returns it ready for tls.
func (ca *CA) Issue(t testing.TB, l Leaf) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-time.Hour)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if l.KeyUsage == 0 {
		l.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if l.ExtKeyUsage == nil {
		l.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: "meshnode test leaf"},
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     l.KeyUsage,
		ExtKeyUsage:  l.ExtKeyUsage,
		URIs:         l.URIs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("issuing test leaf: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// NodeCert issues a node leaf with exactly one URI SAN spiffe://td/node/name.
func (ca *CA) NodeCert(t testing.TB, td, name string) *tls.Certificate {
	t.Helper()
	return ca.Issue(t, Leaf{URIs: []*url.URL{pki.NodeID(td, name).URL()}})
}

// Source returns a pki.TLSSource presenting cert and trusting this CA's
// root in trust domain td. revoked may be nil.
func (ca *CA) Source(t testing.TB, td string, cert *tls.Certificate, revoked pki.Revocations) *pki.TLSSource {
	t.Helper()
	src, err := pki.NewTLSSource(pki.TLSSourceConfig{
		TrustDomain: td,
		Roots:       func() *x509.CertPool { return ca.Pool },
		Certificate: func() (*tls.Certificate, error) { return cert, nil },
		Revocations: revoked,
		Logger:      Logger(t),
	})
	if err != nil {
		t.Fatalf("building TLS source: %v", err)
	}
	return src
}

// NewTLS returns a TLS provider for node name in trust domain td, issued by
// and trusting SharedCA.
func NewTLS(t testing.TB, td, name string) transport.TLSProvider {
	t.Helper()
	ca := SharedCA()
	return ca.Source(t, td, ca.NodeCert(t, td, name), nil)
}

// NewEndpoint listens on 127.0.0.1:0 as node name in TrustDomain, closed by
// t.Cleanup.
func NewEndpoint(t testing.TB, name string) *transport.Endpoint {
	t.Helper()
	return NewEndpointConfig(t, name, transport.Config{})
}

// NewEndpointConfig is NewEndpoint with cfg's non-zero fields kept (TLS,
// BindAddr and Logger are filled when unset).
func NewEndpointConfig(t testing.TB, name string, cfg transport.Config) *transport.Endpoint {
	t.Helper()
	if cfg.TLS == nil {
		cfg.TLS = NewTLS(t, TrustDomain, name)
	}
	if cfg.BindAddr == "" && cfg.PacketConn == nil {
		cfg.BindAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = Logger(t).With("node", name)
	}
	e, err := transport.Listen(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting endpoint %s: %v", name, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// Logger logs to t.Log until the test finishes, then discards (goroutines
// may outlive the test by a moment). Level: Warn, or Debug with -v.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
