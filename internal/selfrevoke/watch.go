package selfrevoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// ErrRevoked: the cluster revoked this node's identity.
var ErrRevoked = errors.New("this node was revoked by the cluster")

// Interval is how often Check should run: a read of memory.
const Interval = time.Second

// refusedChecksToConclude is how many checks in a row must find every seed
// refusing this node's certificate, while its replica cannot be read,
// before the node concludes it was revoked.
const refusedChecksToConclude = 3

// badCertificateAlert is the QUIC CRYPTO_ERROR a TLS peer closes with when
// it refuses our certificate: 0x100 + the bad_certificate alert (42).
const badCertificateAlert = quic.TransportErrorCode(0x100 + 42)

// Replica is the local replica's view of revocations.
type Replica interface {
	IsNodeRevoked(ctx context.Context, opts consensus.ReadOptions, name string) (bool, error)
	Revocations(ctx context.Context, opts consensus.ReadOptions) ([]*meshnodev1.RevocationRecord, uint64, error)
}

// Caller makes one peer call (the transport's endpoint).
type Caller interface {
	Call(ctx context.Context, addr, method string, req []byte) ([]byte, error)
}

// Config configures a Watcher. Every field but Seeds is required.
type Config struct {
	Node    string
	Replica Replica
	// IsRevoked answers whether the current certificate (serial) or the
	// node's name is revoked, from the local replica.
	IsRevoked func(serial *big.Int) bool
	// Serial is the current certificate's serial (nil before there is one).
	Serial func() *big.Int
	// Seeds are asked when the replica cannot be read.
	Seeds  []string
	Caller Caller
	// ExitOnRevoke closes Done on revocation; otherwise the watcher only
	// logs it, once.
	ExitOnRevoke bool
	Logger       *slog.Logger
}

// Watcher is one node's watch on its own revocation.
type Watcher struct {
	cfg     Config
	once    sync.Once
	done    chan struct{}
	mu      sync.Mutex
	err     error // wraps ErrRevoked once known
	refused int   // consecutive checks in which every seed refused us
}

// New returns a watcher; run Check every Interval.
func New(cfg Config) *Watcher { return &Watcher{cfg: cfg, done: make(chan struct{})} }

// Done is closed when the node learns it was revoked and ExitOnRevoke is
// set: the owner should stop it. Err says why.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Err is the revocation (wrapping ErrRevoked), nil before it is known.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Check looks once.
func (w *Watcher) Check(ctx context.Context) {
	if w.Err() != nil {
		return
	}
	serial := w.cfg.Serial()
	if serial == nil {
		return
	}
	var reason string
	switch _, readErr := w.cfg.Replica.IsNodeRevoked(ctx, consensus.ReadOptions{}, w.cfg.Node); {
	case readErr == nil:
		w.refused = 0
		if !w.cfg.IsRevoked(serial) {
			return
		}
		reason = w.reason(ctx)
	default:
		if !w.seedsRefuseUs(ctx) {
			w.refused = 0
			return
		}
		if w.refused++; w.refused < refusedChecksToConclude {
			return
		}
		reason = fmt.Sprintf("not known: this node's replica cannot be read (%v) and every seed refused its certificate (TLS bad_certificate) %d times in a row; if it was not revoked, its certificate is otherwise not accepted (expired, or another cluster's)", readErr, w.refused)
	}
	err := fmt.Errorf("%w: %s (reason: %s); every peer refuses its certificate", ErrRevoked, w.cfg.Node, reason)
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	if !w.cfg.ExitOnRevoke {
		w.cfg.Logger.Error("this node was revoked by the cluster: every peer refuses its certificate; staying up because exit_on_revoke is false",
			"node", w.cfg.Node, "reason", reason)
		return
	}
	w.cfg.Logger.Error("this node was revoked by the cluster: every peer refuses its certificate; stopping", "node", w.cfg.Node, "reason", reason)
	w.once.Do(func() { close(w.done) })
}

// seedsRefuseUs reports whether every seed answered with the bad-certificate
// alert (at least one did, none accepted).
func (w *Watcher) seedsRefuseUs(ctx context.Context) bool {
	if len(w.cfg.Seeds) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, Interval)
	defer cancel()
	refused := 0
	for _, addr := range w.cfg.Seeds {
		_, err := w.cfg.Caller.Call(ctx, addr, consensus.MethodServers, nil)
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

// reason is the reason recorded with this node's revocation, or "not given".
func (w *Watcher) reason(ctx context.Context) string {
	recs, _, err := w.cfg.Replica.Revocations(ctx, consensus.ReadOptions{})
	if err != nil {
		return "not known: " + err.Error()
	}
	for _, r := range recs {
		if r.GetNode() == w.cfg.Node && r.GetReason() != "" {
			return r.GetReason()
		}
	}
	return "not given"
}
