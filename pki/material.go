package pki

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/x509util"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Lifetimes of the CA certificates. The intermediate's key lives in Raft on
// every server, so it is shorter-lived than the root, whose key should be
// offline; both are long enough that a development cluster never meets them.
const (
	RootLifetime         = 10 * 365 * 24 * time.Hour
	IntermediateLifetime = 5 * 365 * 24 * time.Hour
)

// NewCAMaterial creates a fresh root and intermediate (ECDSA P-256) for
// trust domain td. It returns the material to store (which never holds the
// root key) and the root key, for the caller to keep offline or discard.
func NewCAMaterial(td string, now time.Time) (*CAMaterial, crypto.Signer, error) {
	if err := ValidateTrustDomain(td); err != nil {
		return nil, nil, err
	}
	rootKey, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generating root key: %w", err)
	}
	root, err := selfSignRoot(td, rootKey, now)
	if err != nil {
		return nil, nil, err
	}
	m, err := NewIntermediate(td, root, rootKey, now)
	if err != nil {
		return nil, nil, err
	}
	return m, rootKey, nil
}

func selfSignRoot(td string, key crypto.Signer, now time.Time) (*x509.Certificate, error) {
	c, err := x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: key.Public()},
		x509util.WithTemplate(x509util.DefaultRootTemplate, x509util.CreateTemplateData("meshnode root CA "+td, nil)))
	if err != nil {
		return nil, fmt.Errorf("pki: root template: %w", err)
	}
	tmpl := c.GetCertificate()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Minute), now.Add(RootLifetime)
	root, err := x509util.CreateCertificate(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: signing root: %w", err)
	}
	return root, nil
}

// NewIntermediate creates a fresh intermediate signed by root/rootKey and
// returns it as CA material. `meshnode pki init` and root rotation use it.
func NewIntermediate(td string, root *x509.Certificate, rootKey crypto.Signer, now time.Time) (*CAMaterial, error) {
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return nil, fmt.Errorf("pki: generating intermediate key: %w", err)
	}
	c, err := x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: key.Public()},
		x509util.WithTemplate(x509util.DefaultIntermediateTemplate, x509util.CreateTemplateData("meshnode intermediate CA "+td, nil)))
	if err != nil {
		return nil, fmt.Errorf("pki: intermediate template: %w", err)
	}
	tmpl := c.GetCertificate()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Minute), now.Add(IntermediateLifetime)
	if tmpl.NotAfter.After(root.NotAfter) {
		tmpl.NotAfter = root.NotAfter
	}
	inter, err := x509util.CreateCertificate(tmpl, root, key.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("pki: signing intermediate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding intermediate key: %w", err)
	}
	return &CAMaterial{
		TrustDomain:       td,
		RootCerts:         [][]byte{root.Raw},
		IntermediateChain: [][]byte{inter.Raw},
		IntermediateKey:   keyDER,
		CreatedAt:         timestamppb.New(now),
	}, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, as carried in tokens.
func Fingerprint(cert *x509.Certificate) []byte {
	sum := sha256.Sum256(cert.Raw)
	return sum[:]
}

// signer is CA material decoded and checked, ready to sign.
type signer struct {
	td     string
	roots  []*x509.Certificate
	chain  []*x509.Certificate // intermediate first
	key    crypto.Signer
	pool   *x509.CertPool
	rootFP []byte
}

// decodeMaterial parses m and checks it is coherent: the key matches the
// intermediate and the intermediate chains to the first root.
func decodeMaterial(m *CAMaterial) (*signer, error) {
	if m == nil || len(m.GetRootCerts()) == 0 || len(m.GetIntermediateChain()) == 0 || len(m.GetIntermediateKey()) == 0 {
		return nil, errors.New("pki: CA material incomplete: need roots, intermediate chain and key")
	}
	s := &signer{td: m.GetTrustDomain(), pool: x509.NewCertPool()}
	for i, der := range m.GetRootCerts() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("pki: CA material root %d: %w", i, err)
		}
		s.roots = append(s.roots, c)
		s.pool.AddCert(c)
	}
	inter := x509.NewCertPool()
	for i, der := range m.GetIntermediateChain() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("pki: CA material intermediate %d: %w", i, err)
		}
		s.chain = append(s.chain, c)
		inter.AddCert(c)
	}
	k, err := x509.ParsePKCS8PrivateKey(m.GetIntermediateKey())
	if err != nil {
		return nil, fmt.Errorf("pki: CA material intermediate key: %w", err)
	}
	ks, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: CA material intermediate key is a %T, not a signer", k)
	}
	if err := keyutil.VerifyPair(s.chain[0].PublicKey, ks); err != nil {
		return nil, fmt.Errorf("pki: CA material intermediate key does not match its certificate: %w", err)
	}
	s.key = ks
	if !s.chain[0].IsCA {
		return nil, errors.New("pki: CA material intermediate is not a CA certificate")
	}
	if _, err := s.chain[0].Verify(x509.VerifyOptions{
		Roots: s.pool, Intermediates: inter, CurrentTime: s.chain[0].NotBefore.Add(time.Minute),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("pki: CA material intermediate does not chain to the roots: %w", err)
	}
	s.rootFP = Fingerprint(s.roots[0])
	return s, nil
}

func (s *signer) rootDER() [][]byte {
	out := make([][]byte, 0, len(s.roots))
	for _, c := range s.roots {
		out = append(out, c.Raw)
	}
	return out
}

func (s *signer) hasRoot(fp []byte) bool {
	for _, r := range s.roots {
		if bytes.Equal(Fingerprint(r), fp) {
			return true
		}
	}
	return false
}
