package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/agentmesh/meshnode/internal/atomicfile"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
)

// Files under <data-dir>/pki/current/ (directories 0700). current is a
// symlink to a generation directory gen-*, swapped atomically on every save
// so that key and chain always match, even across a crash.
const (
	credDir      = "pki"
	currentLink  = "current"
	keyFile      = "node.key"    // 0600: the node's private key, PKCS#8 PEM
	chainFile    = "node.crt"    // 0644: node certificate, then intermediates
	rootsFile    = "roots.crt"   // 0644: trusted roots, current first
	rootKeyFile  = "root_ca.key" // 0600: bootstrap root key (dev CA only)
	keyFileMode  = 0o600
	certFileMode = 0o644
	dirMode      = 0o700
)

// ErrNoCredentials: the data directory has no node credentials yet (the
// node must join with a token, or bootstrap).
var ErrNoCredentials = errors.New("pki: no node credentials in data directory")

// ErrInsecureKeyFile: a key file is readable or writable by group or others.
var ErrInsecureKeyFile = errors.New("pki: key file permissions too open")

// Credentials are a node's key, certificate chain and trusted roots.
type Credentials struct {
	Key   crypto.Signer
	Chain []*x509.Certificate // leaf first, then intermediates
	Roots []*x509.Certificate // current first
}

// Dir returns the credentials directory inside dataDir.
func Dir(dataDir string) string { return filepath.Join(dataDir, credDir) }

// KeyPath is where the node key of the current credentials is read from.
func KeyPath(dataDir string) string { return filepath.Join(Dir(dataDir), currentLink, keyFile) }

// ID returns the identity in the leaf.
func (c *Credentials) ID() (ID, error) { return IDFromCert(c.Chain[0]) }

// Leaf returns the node certificate.
func (c *Credentials) Leaf() *x509.Certificate { return c.Chain[0] }

// ValidAt reports whether the leaf is within its validity period at t.
func (c *Credentials) ValidAt(t time.Time) bool {
	l := c.Chain[0]
	return !t.Before(l.NotBefore) && !t.After(l.NotAfter)
}

// TLSCertificate returns the chain a node presents: leaf, intermediates and
// the current root (so joiners can match the token's fingerprint).
func (c *Credentials) TLSCertificate() *tls.Certificate {
	tc := &tls.Certificate{PrivateKey: c.Key, Leaf: c.Chain[0]}
	for _, x := range c.Chain {
		tc.Certificate = append(tc.Certificate, x.Raw)
	}
	if len(c.Roots) > 0 {
		tc.Certificate = append(tc.Certificate, c.Roots[0].Raw)
	}
	return tc
}

// RootPool returns the roots as a pool.
func (c *Credentials) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range c.Roots {
		p.AddCert(r)
	}
	return p
}

// Check verifies that the key matches the leaf and the chain leads to the
// roots at time now, with a node identity in trust domain td.
func (c *Credentials) Check(td string, now time.Time) (ID, error) {
	if c.Key == nil || len(c.Chain) == 0 || len(c.Roots) == 0 {
		return ID{}, errors.New("pki: credentials incomplete")
	}
	if err := keyutil.VerifyPair(c.Chain[0].PublicKey, c.Key); err != nil {
		return ID{}, fmt.Errorf("pki: node key does not match node certificate: %w", err)
	}
	id, err := VerifyPeer(c.Chain, VerifyOptions{
		TrustDomain: td, Roots: c.RootPool(), Usage: x509.ExtKeyUsageClientAuth, Now: now,
	})
	if err != nil {
		return id, fmt.Errorf("pki: node certificate: %w", err)
	}
	return id, nil
}

// LoadCredentials reads <dataDir>/pki/. It returns an error wrapping
// ErrNoCredentials if there are none, and ErrInsecureKeyFile (naming the file
// and the fix) if the key is readable by group or others.
func LoadCredentials(dataDir string) (*Credentials, error) {
	dir := filepath.Join(Dir(dataDir), currentLink)
	kp := filepath.Join(dir, keyFile)
	if _, err := os.Stat(kp); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s absent", ErrNoCredentials, kp)
	}
	if err := CheckKeyFileMode(kp); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(kp)
	if err != nil {
		return nil, fmt.Errorf("pki: reading node key: %w", err)
	}
	k, err := pemutil.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("pki: parsing node key %s: %w", kp, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: node key %s is a %T, not a signing key", kp, k)
	}
	chain, err := readCerts(filepath.Join(dir, chainFile))
	if err != nil {
		return nil, err
	}
	roots, err := readCerts(filepath.Join(dir, rootsFile))
	if err != nil {
		return nil, err
	}
	return &Credentials{Key: signer, Chain: chain, Roots: roots}, nil
}

// CheckKeyFileMode refuses a key file that group or others can access.
func CheckKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pki: checking key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; it must be readable by its owner only: run `chmod 600 %s`",
			ErrInsecureKeyFile, path, fi.Mode().Perm(), path)
	}
	return nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: reading %s: %w", path, err)
	}
	certs, err := pemutil.ParseCertificateBundle(b)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("pki: parsing certificates in %s: %v", path, err)
	}
	return certs, nil
}

// Save writes the credentials to a new generation directory under
// <dataDir>/pki/ and then atomically repoints the "current" symlink at it
// (each file fsynced, then the directories): a crash leaves either the old
// or the new key+chain pair, never a half-written key nor a key that does
// not match its certificate. Older generations are removed afterwards.
func (c *Credentials) Save(dataDir string) error {
	dir := Dir(dataDir)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return fmt.Errorf("pki: securing %s: %w", dir, err)
	}
	blk, err := pemutil.Serialize(c.Key, pemutil.WithPKCS8(true))
	if err != nil {
		return fmt.Errorf("pki: encoding node key: %w", err)
	}
	gen, err := os.MkdirTemp(dir, "gen-") // created 0700
	if err != nil {
		return fmt.Errorf("pki: creating a credentials directory in %s: %w", dir, err)
	}
	if err := c.writeGeneration(gen, pem.EncodeToMemory(blk)); err != nil {
		os.RemoveAll(gen)
		return err
	}
	if err := swapSymlink(dir, currentLink, filepath.Base(gen)); err != nil {
		os.RemoveAll(gen)
		return err
	}
	pruneGenerations(dir, filepath.Base(gen))
	return nil
}

func (c *Credentials) writeGeneration(gen string, keyPEM []byte) error {
	if err := writeFile(filepath.Join(gen, keyFile), keyPEM, keyFileMode); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(gen, chainFile), pemCerts(c.Chain), certFileMode); err != nil {
		return err
	}
	return writeFile(filepath.Join(gen, rootsFile), pemCerts(c.Roots), certFileMode)
}

// swapSymlink atomically makes dir/name a symlink to target (relative, so
// the data directory can move).
func swapSymlink(dir, name, target string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("pki: linking credentials: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("pki: switching credentials: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("pki: switching credentials: %w", err)
	}
	return nil
}

// pruneGenerations removes every gen-* directory but keep. Failures only
// leave garbage behind, so they are ignored.
func pruneGenerations(dir, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, "gen-*"))
	for _, g := range old {
		if filepath.Base(g) != keep {
			_ = os.RemoveAll(g)
		}
	}
}

// writeFile is atomicfile.Write with the package's error prefix.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.Write(path, data, mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func pemCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Keeper holds a node's current credentials for TLSSource and swaps them
// atomically on rotation; handshakes in flight keep the old ones.
type Keeper struct {
	dataDir string
	cur     atomic.Pointer[keeperState]
}

type keeperState struct {
	creds *Credentials
	tls   *tls.Certificate
	pool  *x509.CertPool
}

// NewKeeper returns a keeper serving c; Rotate saves to dataDir ("" = never saves).
func NewKeeper(dataDir string, c *Credentials) *Keeper {
	k := &Keeper{dataDir: dataDir}
	k.store(c)
	return k
}

func (k *Keeper) store(c *Credentials) {
	k.cur.Store(&keeperState{creds: c, tls: c.TLSCertificate(), pool: c.RootPool()})
}

// Current returns the credentials in use.
func (k *Keeper) Current() *Credentials { return k.cur.Load().creds }

// Certificate is TLSSourceConfig.Certificate.
func (k *Keeper) Certificate() (*tls.Certificate, error) { return k.cur.Load().tls, nil }

// Roots is TLSSourceConfig.Roots.
func (k *Keeper) Roots() *x509.CertPool { return k.cur.Load().pool }

// Rotate saves c to disk, then makes it current.
func (k *Keeper) Rotate(c *Credentials) error {
	if k.dataDir != "" {
		if err := c.Save(k.dataDir); err != nil {
			return err
		}
	}
	k.store(c)
	return nil
}
