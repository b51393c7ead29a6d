package node

import (
	"context"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// bootstrapOperators creates the first admin (operator.Bootstrap) and stores
// the trust bundle in Raft, where it is written once.
func (n *Node) bootstrapOperators(ctx context.Context) error {
	var roots [][]byte
	for _, r := range n.keeper.Current().Roots {
		roots = append(roots, r.Raw)
	}
	var bundle *meshnodev1.TrustBundle
	var err error
	if n.cfg.CADir != "" {
		// The first admin may have been created offline with the CA.
		if bundle, err = operator.AdoptOffline(n.cfg.CADir, n.cfg.DataDir, roots); err != nil {
			return err
		}
	}
	offline := bundle != nil
	if !offline {
		if bundle, err = operator.Bootstrap(n.cfg.DataDir, roots); err != nil {
			return err
		}
	}
	if err := n.retryWrite(ctx, "store the trust bundle in Raft", func(ctx context.Context) error {
		_, err := n.store.PutTrustBundle(ctx, bundle)
		return err
	}); err != nil {
		return err
	}
	if offline {
		n.log.Info("adopted the first admin created offline; no operator key is on this server",
			"first_admin", bundle.GetFirstAdminName(), "trust_bundle", operator.TrustBundlePath(n.cfg.DataDir))
		return nil
	}
	n.log.Info("created the first admin operator; its key signs admin commands from this host's CLI",
		"key", operator.BootstrapKeyPath(n.cfg.DataDir), "trust_bundle", operator.TrustBundlePath(n.cfg.DataDir))
	return nil
}
