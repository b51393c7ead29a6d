package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/background"
	"github.com/quic-go/quic-go"
)

// ErrRevoked: the cluster revoked this node's identity. Every peer refuses
// its certificate, so nothing it retries can succeed.
var ErrRevoked = errors.New("this node was revoked by the cluster")

// revocationCheckInterval is how often a node reads its own revocation from
// its local replica: a read of memory, cheap at any rate.
const revocationCheckInterval = time.Second

// refusedChecksToConclude is how many checks in a row must find every seed
// refusing this node's certificate, while its replica cannot be read,
// before the node concludes it was revoked.
const refusedChecksToConclude = 3

// badCertificateAlert is the QUIC CRYPTO_ERROR a TLS peer closes with when
// it refuses our certificate: 0x100 + the bad_certificate alert (42).
const badCertificateAlert = quic.TransportErrorCode(0x100 + 42)

// selfRevocation is what the node learnt about its own revocation.
type selfRevocation struct {
	once    sync.Once
	done    chan struct{} // closed when the node learns it was revoked and must stop
	err     error         // wraps ErrRevoked; set before done is closed
	refused int           // consecutive checks in which every seed refused us
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
	if creds == nil {
		return
	}
	var reason string
	switch _, readErr := n.store.IsNodeRevoked(ctx, consensus.ReadOptions{}, n.cfg.Name); {
	case readErr == nil:
		n.selfRevoked.refused = 0
		if !n.pki.IsRevoked(creds.Leaf().SerialNumber, n.id) {
			return
		}
		reason = n.revocationReason(ctx)
	default:
		// A client restarted after its revocation never gets a replica:
		// the servers refuse it. Then the refusals are the signal.
		if !n.seedsRefuseUs(ctx) {
			n.selfRevoked.refused = 0
			return
		}
		if n.selfRevoked.refused++; n.selfRevoked.refused < refusedChecksToConclude {
			return
		}
		reason = fmt.Sprintf("not known: this node's replica cannot be read (%v) and every seed refused its certificate (TLS bad_certificate) %d times in a row; if it was not revoked, its certificate is otherwise not accepted (expired, or another cluster's)", readErr, n.selfRevoked.refused)
	}
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

// seedsRefuseUs reports whether every seed this node may reach answered a
// connection with the bad-certificate alert (at least one did, none
// accepted).
func (n *Node) seedsRefuseUs(ctx context.Context) bool {
	if len(n.cfg.Join) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, revocationCheckInterval)
	defer cancel()
	refused := 0
	for _, addr := range n.cfg.Join {
		_, err := n.ep.Call(ctx, addr, consensus.MethodServers, nil)
		var te *quic.TransportError
		switch {
		case errors.As(err, &te) && te.Remote && te.ErrorCode == badCertificateAlert:
			refused++
		case err == nil:
			return false
		}
	}
	return refused > 0
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
