package node

import (
	"context"
	"math/big"

	"github.com/agentmesh/meshnode/internal/background"
	"github.com/agentmesh/meshnode/internal/selfrevoke"
)

// ErrRevoked: the cluster revoked this node's identity.
var ErrRevoked = selfrevoke.ErrRevoked

func (n *Node) startRevocationWatch(_ context.Context, bg *background.Group) error {
	w := selfrevoke.New(selfrevoke.Config{
		Node:      n.cfg.Name,
		Replica:   n.store,
		IsRevoked: func(serial *big.Int) bool { return n.pki.IsRevoked(serial, n.id) },
		Serial: func() *big.Int {
			if c := n.keeper.Current(); c != nil {
				return c.Leaf().SerialNumber
			}
			return nil
		},
		Seeds: n.cfg.Join, Caller: n.ep, ExitOnRevoke: n.cfg.ExitOnRevoke, Logger: n.log,
	})
	n.selfRevoked.Store(w)
	bg.Every(selfrevoke.Interval, w.Check)
	return nil
}

// Revoked is closed when the node learns that the cluster revoked it and
// Config.ExitOnRevoke is set: the owner should Stop it and exit. RevokedErr
// then says why. Before the watch starts it never closes.
func (n *Node) Revoked() <-chan struct{} {
	if w := n.selfRevoked.Load(); w != nil {
		return w.Done()
	}
	return nil
}

// RevokedErr is the revocation Revoked announced (wrapping ErrRevoked), nil
// before.
func (n *Node) RevokedErr() error {
	if w := n.selfRevoked.Load(); w != nil {
		return w.Err()
	}
	return nil
}
