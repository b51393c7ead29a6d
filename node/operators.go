package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/internal/atomicfile"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// FirstAdmin is the name of the operator whose key the bootstrapping server
// creates.
const FirstAdmin = "admin"

// BootstrapKeyPath is where a bootstrapping server leaves the first admin's
// key (0600), so `make run` and a policy change from the CLI work with no
// setup. Production moves it off the server (docs/operators.md).
func BootstrapKeyPath(dataDir string) string {
	return filepath.Join(dataDir, "operator", "admin.key")
}

// TrustBundlePath is where a server keeps the cluster's trust bundle: the
// roots and the first admin's key, all anyone needs to verify an operator.
func TrustBundlePath(dataDir string) string { return filepath.Join(dataDir, "trust-bundle.pb") }

// bootstrapOperators creates the first admin's key (or reuses one left by a
// start that failed after writing it), writes the trust bundle to the data
// dir and stores it in Raft, where it is written once.
func (n *Node) bootstrapOperators(ctx context.Context) error {
	path := BootstrapKeyPath(n.cfg.DataDir)
	key, err := operator.ReadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = operator.GenerateKey(); err == nil {
			if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
				err = operator.WriteKeyFile(path, key)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("first admin key: %w", err)
	}
	bundle := &meshnodev1.TrustBundle{FirstAdminName: FirstAdmin, FirstAdminPublicKey: key.Public().(ed25519.PublicKey)}
	for _, r := range n.keeper.Current().Roots {
		bundle.Roots = append(bundle.Roots, r.Raw)
	}
	b, err := proto.Marshal(bundle)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(TrustBundlePath(n.cfg.DataDir), b, 0o644); err != nil {
		return fmt.Errorf("write the trust bundle: %w", err)
	}
	if err := n.retryWrite(ctx, "store the trust bundle in Raft", func(ctx context.Context) error {
		_, err := n.store.PutTrustBundle(ctx, bundle)
		return err
	}); err != nil {
		return err
	}
	n.log.Info("created the first admin operator; its key signs admin commands from this host's CLI", "key", path, "trust_bundle", TrustBundlePath(n.cfg.DataDir))
	return nil
}
