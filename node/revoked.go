package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/background"
)

// ErrRevoked: the cluster revoked this node's identity. Every peer refuses
// its certificate, so nothing it retries can succeed.
var ErrRevoked = errors.New("this node was revoked by the cluster")

// revocationCheckInterval is how often a node reads its own revocation from
// its local replica: a read of memory, cheap at any rate.
const revocationCheckInterval = time.Second

// selfRevocation is what the node learnt about its own revocation.
type selfRevocation struct {
	once sync.Once
	done chan struct{} // closed when the node learns it was revoked and must stop
	err  error         // wraps ErrRevoked; set before done is closed
}

// startRevocationWatch watches the local replica for a revocation of this
// node's name or current certificate. The replica receives the revocation
// entry before the servers cut the node off (they do so only after
// applying it), so this is the signal that does not depend on reading
// refusals off failed handshakes.
func (n *Node) startRevocationWatch(_ context.Context, bg *background.Group) error {
	bg.Every(revocationCheckInterval, n.checkSelfRevoked)
	return nil
}

func (n *Node) checkSelfRevoked(ctx context.Context) {
	if n.selfRevoked.err != nil {
		return
	}
	creds := n.keeper.Current()
	if creds == nil || !n.pki.IsRevoked(creds.Leaf().SerialNumber, n.id) {
		return
	}
	reason := n.revocationReason(ctx)
	err := fmt.Errorf("%w: %s (reason: %s); every peer refuses its certificate", ErrRevoked, n.cfg.Name, reason)
	if !n.cfg.ExitOnRevoke {
		n.selfRevoked.err = err
		n.log.Error("this node was revoked by the cluster: every peer refuses its certificate; staying up because exit_on_revoke is false",
			"node", n.cfg.Name, "reason", reason)
		return
	}
	n.log.Error("this node was revoked by the cluster: every peer refuses its certificate; stopping",
		"node", n.cfg.Name, "reason", reason)
	n.selfRevoked.once.Do(func() {
		n.selfRevoked.err = err
		close(n.selfRevoked.done)
	})
}

// revocationReason is the reason recorded with this node's revocation, or
// "not given".
func (n *Node) revocationReason(ctx context.Context) string {
	recs, _, err := n.store.Revocations(ctx, consensus.ReadOptions{})
	if err != nil {
		return "not known: " + err.Error()
	}
	for _, r := range recs {
		if r.GetNode() == n.cfg.Name && r.GetReason() != "" {
			return r.GetReason()
		}
	}
	return "not given"
}

// Revoked is closed when the node learns that the cluster revoked it and
// Config.ExitOnRevoke is set: the owner should Stop it and exit. RevokedErr
// then says why.
func (n *Node) Revoked() <-chan struct{} { return n.selfRevoked.done }

// RevokedErr is the revocation Revoked announced (wrapping ErrRevoked), nil
// before.
func (n *Node) RevokedErr() error {
	select {
	case <-n.selfRevoked.done:
		return n.selfRevoked.err
	default:
		return nil
	}
}
