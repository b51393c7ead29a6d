package operator

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/internal/atomicfile"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// FirstAdmin is the name of the operator whose key a bootstrapping server
// creates.
const FirstAdmin = "admin"

// BootstrapKeyPath is where a bootstrapping server leaves the first admin's
// key (0600), so a fresh cluster is usable from that host's CLI with no
// setup. Production moves it off the server (docs/operators.md).
func BootstrapKeyPath(dataDir string) string {
	return filepath.Join(dataDir, "operator", "admin.key")
}

// TrustBundlePath is where a server keeps the cluster's trust bundle: the
// roots and the first admin's key, all anyone needs to verify an operator.
func TrustBundlePath(dataDir string) string { return filepath.Join(dataDir, "trust-bundle.pb") }

// OfflineBundleFile is the trust bundle `meshnode operator init` writes
// into a `meshnode pki init` directory: the offline roots and a first admin
// whose private key never was on a server. A server that bootstraps from
// that directory (--ca-dir) adopts it instead of creating a first admin.
const OfflineBundleFile = "trust-bundle.pb"

// InitOffline creates the first admin's key pair at keyPath (0600, and
// keyPath.pub) and, with roots (a `meshnode pki init` directory's root
// certificate), the trust bundle at bundlePath. Existing files are never
// overwritten.
func InitOffline(keyPath, bundlePath, name string, roots [][]byte) (*meshnodev1.TrustBundle, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	for _, p := range []string{keyPath, keyPath + ".pub", bundlePath} {
		if _, err := os.Stat(p); err == nil {
			return nil, fmt.Errorf("%s exists: operator init never overwrites a key or a bundle", p)
		}
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	bundle := &meshnodev1.TrustBundle{Roots: roots, FirstAdminName: name, FirstAdminPublicKey: key.Public().(ed25519.PublicKey)}
	if err := ValidateBundle(bundle); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return nil, err
	}
	if err := WriteKeyFile(keyPath, key); err != nil {
		return nil, err
	}
	if err := WritePublicKeyFile(keyPath+".pub", key.Public().(ed25519.PublicKey)); err != nil {
		return nil, err
	}
	return bundle, writeBundle(bundlePath, bundle)
}

func writeBundle(path string, b *meshnodev1.TrustBundle) error {
	data, err := proto.Marshal(b)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("write the trust bundle: %w", err)
	}
	return nil
}

// AdoptOffline reads the bundle `meshnode operator init` wrote into caDir,
// checks that it names exactly the cluster's roots, and writes it into
// dataDir. It returns nil, nil when caDir holds no bundle.
func AdoptOffline(caDir, dataDir string, roots [][]byte) (*meshnodev1.TrustBundle, error) {
	data, err := os.ReadFile(filepath.Join(caDir, OfflineBundleFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b, err := DecodeTrustBundle(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(caDir, OfflineBundleFile), err)
	}
	if len(b.GetRoots()) != len(roots) {
		return nil, fmt.Errorf("%s names %d roots, the CA has %d: run operator init against this CA directory", OfflineBundleFile, len(b.GetRoots()), len(roots))
	}
	for i := range roots {
		if !bytes.Equal(b.GetRoots()[i], roots[i]) {
			return nil, fmt.Errorf("%s names other roots than the CA in %s: run operator init against this CA directory", OfflineBundleFile, caDir)
		}
	}
	return b, writeBundle(TrustBundlePath(dataDir), b)
}

// Bootstrap creates the first admin's key in dataDir (or reuses one a start
// that failed after writing it left there), writes the trust bundle of the
// roots and that key beside it, and returns the bundle to store in Raft.
func Bootstrap(dataDir string, roots [][]byte) (*meshnodev1.TrustBundle, error) {
	path := BootstrapKeyPath(dataDir)
	key, err := ReadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = GenerateKey(); err == nil {
			if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
				err = WriteKeyFile(path, key)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("first admin key: %w", err)
	}
	bundle := &meshnodev1.TrustBundle{Roots: roots, FirstAdminName: FirstAdmin, FirstAdminPublicKey: key.Public().(ed25519.PublicKey)}
	if err := ValidateBundle(bundle); err != nil {
		return nil, err
	}
	return bundle, writeBundle(TrustBundlePath(dataDir), bundle)
}
