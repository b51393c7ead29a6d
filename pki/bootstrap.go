package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/agentmesh/meshnode/internal/atomicfile"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/internal/clock"
)

// Bootstrap is the single-node default (`meshnode run` with no PKI flags):
// it creates CA material in store if there is none (keeping the root key in
// <dataDir>/pki/root_ca.key, 0600), and gives the node a certificate of its
// own, reusing the one on disk while it is still valid.
func Bootstrap(ctx context.Context, store Store, trustDomain, nodeName, dataDir string) (*CA, *Credentials, error) {
	cfg := DefaultCAConfig()
	cfg.TrustDomain, cfg.Store = trustDomain, store
	return BootstrapWith(ctx, cfg, nodeName, dataDir)
}

// BootstrapWith is Bootstrap with a full CA config (lifetime, clock, logger).
func BootstrapWith(ctx context.Context, cfg CAConfig, nodeName, dataDir string) (*CA, *Credentials, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if err := ValidateName(nodeName); err != nil {
		return nil, nil, fmt.Errorf("pki: bootstrap node name: %w", err)
	}
	rootKeyPath := filepath.Join(Dir(dataDir), rootKeyFile)
	if _, err := os.Stat(rootKeyPath); err == nil {
		if err := CheckKeyFileMode(rootKeyPath); err != nil {
			return nil, nil, err
		}
	}
	now := clock.OrSystem(cfg.Clock).Now
	if _, err := cfg.Store.LoadCA(ctx); errors.Is(err, ErrNotFound) {
		m, rootKey, err := NewCAMaterial(cfg.TrustDomain, now())
		if err != nil {
			return nil, nil, err
		}
		if err := saveKey(rootKeyPath, rootKey); err != nil {
			return nil, nil, err
		}
		if err := cfg.Store.SaveCA(ctx, m); err != nil {
			return nil, nil, fmt.Errorf("pki: storing new CA material: %w", err)
		}
	} else if err != nil {
		return nil, nil, fmt.Errorf("pki: loading CA material: %w", err)
	}
	ca, err := NewCA(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	creds, err := LoadCredentials(dataDir)
	switch {
	case err == nil:
		if id, cerr := creds.Check(cfg.TrustDomain, now()); cerr == nil && id == NodeID(cfg.TrustDomain, nodeName) {
			return ca, creds, nil
		}
	case !errors.Is(err, ErrNoCredentials):
		return nil, nil, err // e.g. an insecure key file: refuse, do not overwrite
	}
	creds, err = ca.IssueLocal(ctx, nodeName)
	if err != nil {
		return nil, nil, err
	}
	if err := creds.Save(dataDir); err != nil {
		return nil, nil, err
	}
	return ca, creds, nil
}

// IssueLocal gives this CA's own node (a server) fresh credentials without
// a token: a new key, and a certificate for spiffe://<td>/node/<nodeName>.
func (ca *CA) IssueLocal(ctx context.Context, nodeName string) (*Credentials, error) {
	id := NodeID(ca.cfg.TrustDomain, nodeName)
	if ca.cfg.Store.IsRevoked(nil, id) {
		return nil, fmt.Errorf("pki: %w: %s", ErrRevoked, id)
	}
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return nil, fmt.Errorf("pki: generating node key: %w", err)
	}
	der, err := NewCSR(id, key)
	if err != nil {
		return nil, err
	}
	csr, err := ParseCSR(der, id)
	if err != nil {
		return nil, err
	}
	s := ca.signer()
	chain, err := ca.issue(s, csr, id, true) // the bootstrapping node is the first server
	if err != nil {
		return nil, err
	}
	return &Credentials{Key: key, Chain: chain, Roots: append([]*x509.Certificate(nil), s.roots...)}, nil
}

// Offline CA files written by InitOffline (for `meshnode pki init`).
const (
	OfflineRootCert         = "root_ca.crt"
	OfflineRootKey          = "root_ca.key"
	OfflineIntermediateCert = "intermediate_ca.crt"
	OfflineIntermediateKey  = "intermediate_ca.key"
)

// InitOffline writes a new root and intermediate for trustDomain into dir
// (created 0700; keys 0600, certificates 0644). The operator moves
// root_ca.key offline and starts the first server with LoadOfflineCA(dir).
// It refuses to overwrite an existing root.
func InitOffline(dir, trustDomain string, now time.Time) error {
	if _, err := os.Stat(filepath.Join(dir, OfflineRootCert)); err == nil {
		return fmt.Errorf("pki: %s already holds a CA; remove it or choose another directory", dir)
	}
	m, rootKey, err := NewCAMaterial(trustDomain, now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	interKey, err := x509.ParsePKCS8PrivateKey(m.IntermediateKey)
	if err != nil {
		return fmt.Errorf("pki: intermediate key: %w", err)
	}
	rootPEM, err := pemKey(OfflineRootKey, rootKey)
	if err != nil {
		return err
	}
	interPEM, err := pemKey(OfflineIntermediateKey, interKey.(crypto.Signer))
	if err != nil {
		return err
	}
	// The root certificate last: its presence is what marks a finished CA.
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{OfflineRootKey, rootPEM, keyFileMode},
		{OfflineIntermediateKey, interPEM, keyFileMode},
		{OfflineIntermediateCert, pemDERs(m.IntermediateChain), certFileMode},
		{OfflineRootCert, pemDERs(m.RootCerts), certFileMode},
	}
	for _, f := range files {
		if err := createFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// LoadOfflineCA reads the root certificate, intermediate certificate and
// intermediate key from dir (never the root key) as CA material for
// Store.SaveCA. The intermediate key file must be 0600.
func LoadOfflineCA(dir, trustDomain string) (*CAMaterial, error) {
	kp := filepath.Join(dir, OfflineIntermediateKey)
	if err := CheckKeyFileMode(kp); err != nil {
		return nil, err
	}
	k, err := pemutil.Read(kp)
	if err != nil {
		return nil, fmt.Errorf("pki: reading %s: %w", kp, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding %s: %w", kp, err)
	}
	roots, err := readCerts(filepath.Join(dir, OfflineRootCert))
	if err != nil {
		return nil, err
	}
	inter, err := readCerts(filepath.Join(dir, OfflineIntermediateCert))
	if err != nil {
		return nil, err
	}
	m := &CAMaterial{
		TrustDomain: trustDomain, RootCerts: derChain(roots), IntermediateChain: derChain(inter),
		IntermediateKey: keyDER, CreatedAt: timestamppb.Now(),
	}
	if _, err := decodeMaterial(m); err != nil {
		return nil, fmt.Errorf("pki: CA files in %s: %w", dir, err)
	}
	return m, nil
}

// saveKey writes key (PKCS#8 PEM, 0600), replacing the file at path.
func saveKey(path string, key crypto.Signer) error {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return fmt.Errorf("pki: creating %s: %w", filepath.Dir(path), err)
	}
	b, err := pemKey(path, key)
	if err != nil {
		return err
	}
	return writeFile(path, b, keyFileMode)
}

func pemKey(path string, key crypto.Signer) ([]byte, error) {
	blk, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("pki: encoding %s: %w", path, err)
	}
	return pem.EncodeToMemory(blk), nil
}

func pemDERs(ders [][]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

// createFile writes a file that must not exist yet: operator CA files are
// never overwritten.
func createFile(path string, data []byte, mode os.FileMode) error {
	err := atomicfile.Create(path, data, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pki: %s already exists; remove it or choose another directory", path)
	}
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
