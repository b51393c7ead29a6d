package pki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.step.sm/crypto/keyutil"

	"github.com/agentmesh/meshnode/internal/clock"
)

// RenewFunc sends a RenewRequest to a server over mutual TLS (the node's
// current certificate authenticates it) and returns the answer.
type RenewFunc func(ctx context.Context, req *meshnodev1.RenewRequest) (*meshnodev1.RenewResponse, error)

// RenewerConfig configures a Renewer.
type RenewerConfig struct {
	// Current returns the credentials in use (e.g. Keeper.Current). Required.
	Current func() *Credentials
	// Renew calls a server's renewal RPC. Required.
	Renew RenewFunc
	// OnRotate installs renewed credentials (e.g. Keeper.Rotate, which
	// saves them first). Required. A failure is retried like a failed RPC.
	OnRotate func(*Credentials) error
	// Jitter spreads renewals of many nodes: each renewal is planned up to
	// Jitter×lifetime before 2/3 of the lifetime (never after, so a full
	// third of the lifetime is always left for retries). Zero means 0.05.
	Jitter float64
	// MinBackoff is the first retry delay after a failure; zero means 1s.
	MinBackoff time.Duration
	// MaxBackoff caps the retry delay; zero means 2 minutes.
	MaxBackoff time.Duration
	// Clock plans renewals and times retries; nil means clock.System.
	Clock clock.Clock
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports the first missing or inconsistent field.
func (c *RenewerConfig) Validate() error {
	switch {
	case c.Current == nil:
		return errors.New("pki: RenewerConfig.Current is required")
	case c.Renew == nil:
		return errors.New("pki: RenewerConfig.Renew is required")
	case c.OnRotate == nil:
		return errors.New("pki: RenewerConfig.OnRotate is required")
	case c.Jitter < 0 || c.Jitter > 0.3:
		return fmt.Errorf("pki: RenewerConfig.Jitter %v out of [0, 0.3]", c.Jitter)
	case c.MaxBackoff != 0 && c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("pki: RenewerConfig.MinBackoff %s exceeds MaxBackoff %s", c.MinBackoff, c.MaxBackoff)
	}
	return nil
}

// Renewer renews the node certificate at about 2/3 of its lifetime, with a
// fresh key each time, retrying with exponential backoff. With the default
// 24h lifetime the CA may be unreachable for 8h without an outage.
type Renewer struct {
	cfg     RenewerConfig
	log     *slog.Logger
	renewAt atomic.Int64 // unix nanos of the next planned attempt
}

// NewRenewer validates cfg and fills defaults.
func NewRenewer(cfg RenewerConfig) (*Renewer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = 0.05
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 2 * time.Minute
	}
	cfg.Clock = clock.OrSystem(cfg.Clock)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Renewer{cfg: cfg, log: log.With("component", "pki.renewer")}, nil
}

// RenewTime is when a certificate valid from notBefore to notAfter should be
// renewed: at 2/3 of its lifetime, moved by jitter×lifetime (the Renewer
// passes a jitter in [-Jitter, 0]).
func RenewTime(notBefore, notAfter time.Time, jitter float64) time.Time {
	life := notAfter.Sub(notBefore)
	return notBefore.Add(life*2/3 + time.Duration(jitter*float64(life)))
}

// RenewAt is the next planned renewal attempt (for `meshnode status`).
func (r *Renewer) RenewAt() time.Time { return time.Unix(0, r.renewAt.Load()) }

// Run renews until ctx is done; it returns ctx's error. The caller owns the
// goroutine that runs it.
func (r *Renewer) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		leaf := r.cfg.Current().Leaf()
		at := RenewTime(leaf.NotBefore, leaf.NotAfter, -rand.Float64()*r.cfg.Jitter)
		if backoff > 0 {
			at = r.cfg.Clock.Now().Add(backoff)
		}
		r.renewAt.Store(at.UnixNano())
		if d := at.Sub(r.cfg.Clock.Now()); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-r.cfg.Clock.After(d):
			}
		}
		if err := r.RenewNow(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			backoff = r.nextBackoff(backoff, leaf.NotAfter.Sub(r.cfg.Clock.Now()))
			r.log.Warn("certificate renewal failed; will retry", "err", err, "retry_in", backoff, "expires", leaf.NotAfter)
			continue
		}
		backoff = 0
	}
}

// nextBackoff doubles prev within [MinBackoff, MaxBackoff], with ±20%
// jitter, and retries more eagerly as expiry nears (at most a tenth of the
// time left), so the first attempt after the CA returns comes soon enough.
func (r *Renewer) nextBackoff(prev, left time.Duration) time.Duration {
	next := max(prev*2, r.cfg.MinBackoff)
	next = min(next, r.cfg.MaxBackoff, max(left/10, r.cfg.MinBackoff))
	return time.Duration(float64(next) * (0.8 + 0.4*rand.Float64()))
}

// RenewNow makes one renewal attempt: new key, CSR for the current
// identity, RPC, check of the answer, install.
func (r *Renewer) RenewNow(ctx context.Context) error {
	cur := r.cfg.Current()
	id, err := cur.ID()
	if err != nil {
		return err
	}
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return fmt.Errorf("pki: generating key for renewal of %s: %w", id, err)
	}
	csr, err := NewCSR(id, key)
	if err != nil {
		return err
	}
	resp, err := r.cfg.Renew(ctx, &meshnodev1.RenewRequest{Csr: csr})
	if err != nil {
		return fmt.Errorf("pki: renewing %s: %w", id, err)
	}
	next, err := CredentialsFromRenew(cur, key, resp, r.cfg.Clock.Now())
	if err != nil {
		return err
	}
	if err := r.cfg.OnRotate(next); err != nil {
		return fmt.Errorf("pki: installing renewed certificate for %s: %w", id, err)
	}
	r.log.Info("renewed certificate", "id", id.String(), "serial", next.Leaf().SerialNumber.String(), "not_after", next.Leaf().NotAfter)
	return nil
}
