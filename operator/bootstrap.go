package operator

import (
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
	b, err := proto.Marshal(bundle)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(TrustBundlePath(dataDir), b, 0o644); err != nil {
		return nil, fmt.Errorf("write the trust bundle: %w", err)
	}
	return bundle, nil
}
