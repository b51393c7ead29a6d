package node

import (
	"context"

	"github.com/agentmesh/meshnode/operator"
)

// bootstrapOperators creates the first admin (operator.Bootstrap) and stores
// the trust bundle in Raft, where it is written once.
func (n *Node) bootstrapOperators(ctx context.Context) error {
	var roots [][]byte
	for _, r := range n.keeper.Current().Roots {
		roots = append(roots, r.Raw)
	}
	bundle, err := operator.Bootstrap(n.cfg.DataDir, roots)
	if err != nil {
		return err
	}
	if err := n.retryWrite(ctx, "store the trust bundle in Raft", func(ctx context.Context) error {
		_, err := n.store.PutTrustBundle(ctx, bundle)
		return err
	}); err != nil {
		return err
	}
	n.log.Info("created the first admin operator; its key signs admin commands from this host's CLI",
		"key", operator.BootstrapKeyPath(n.cfg.DataDir), "trust_bundle", operator.TrustBundlePath(n.cfg.DataDir))
	return nil
}
