package agent

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff is the reconnect schedule after the node goes away: the n-th
// consecutive failure waits min(Initial*Multiplier^(n-1), Max), spread by
// ±Jitter so agents on a restarted node do not reconnect in lock step.
// Zero fields take the defaults noted on each.
type Backoff struct {
	// Initial is the first wait. Default 100ms: a node restart typically
	// takes a few hundred milliseconds, so the first retries are quick.
	Initial time.Duration
	// Max caps the wait. Default 5s: an agent notices a returning node
	// within seconds even after a long outage.
	Max time.Duration
	// Multiplier grows the wait after each failure. Default 2.
	Multiplier float64
	// Jitter is the fraction of randomisation, 0 to 1. Default 0.2.
	// Set a negative value for none (tests).
	Jitter float64
}

// DefaultBackoff returns the schedule zero fields default to.
func DefaultBackoff() Backoff {
	return Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}
}

func (b Backoff) withDefaults() Backoff {
	d := DefaultBackoff()
	if b.Initial == 0 {
		b.Initial = d.Initial
	}
	if b.Max == 0 {
		b.Max = d.Max
	}
	if b.Multiplier == 0 {
		b.Multiplier = d.Multiplier
	}
	if b.Jitter == 0 {
		b.Jitter = d.Jitter
	}
	return b // a negative Jitter stays negative: "none", and idempotent
}

// Validate checks the schedule; zero fields are valid and mean defaults.
func (b Backoff) Validate() error {
	switch {
	case b.Initial < 0:
		return errors.New("agent: ReconnectBackoff.Initial must not be negative")
	case b.Max < 0:
		return errors.New("agent: ReconnectBackoff.Max must not be negative")
	case b.Initial > 0 && b.Max > 0 && b.Max < b.Initial:
		return errors.New("agent: ReconnectBackoff.Max must be at least ReconnectBackoff.Initial")
	case b.Multiplier != 0 && b.Multiplier < 1:
		return errors.New("agent: ReconnectBackoff.Multiplier must be at least 1")
	case b.Jitter > 1:
		return errors.New("agent: ReconnectBackoff.Jitter must be at most 1")
	}
	return nil
}

// delay returns the wait before retry number attempt (1-based). rnd returns
// a float in [0, 1); it is a parameter so tests are deterministic.
func (b Backoff) delay(attempt int, rnd func() float64) time.Duration {
	b = b.withDefaults()
	d := float64(b.Initial)
	for i := 1; i < attempt && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	d = min(d, float64(b.Max))
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rnd()-1)
	}
	return time.Duration(d)
}

func defaultRand() float64 { return rand.Float64() }
