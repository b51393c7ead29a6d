package routing

import (
	"math/rand/v2"
	"time"
)

// BreakerState is a circuit breaker's state.
type BreakerState int

// Breaker states.
const (
	BreakerClosed   BreakerState = iota // calls flow
	BreakerOpen                         // no calls until the open time ends
	BreakerHalfOpen                     // a few probe calls decide
)

func (s BreakerState) String() string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// breaker is one agent's circuit breaker for one capability. It trips on
// ConsecutiveFailures failures in a row, or on a failure rate of at least
// FailureRate over Window once MinRequests calls were seen. Open lasts
// OpenDuration doubled per consecutive trip (capped, jittered); then
// HalfOpenProbes probe calls are let through: that many successes close it,
// one failure reopens it. Not safe for concurrent use; the Router locks.
type breaker struct {
	state       BreakerState
	consecutive int
	win         rolling // a: calls, b: failures
	openUntil   time.Time
	trips       int // consecutive trips without closing, for the doubling
	probes      int // probes in flight
	probeOK     int
}

// current moves open to half-open once the open time has passed.
func (b *breaker) current(now time.Time) BreakerState {
	if b.state == BreakerOpen && !now.Before(b.openUntil) {
		b.state, b.probes, b.probeOK = BreakerHalfOpen, 0, 0
	}
	return b.state
}

// admits reports whether a call may go through now, and whether it would be a probe.
func (b *breaker) admits(now time.Time, cfg BreakerConfig) (ok, probe bool) {
	if cfg.Disabled {
		return true, false
	}
	switch b.current(now) {
	case BreakerClosed:
		return true, false
	case BreakerHalfOpen:
		return b.probes < cfg.HalfOpenProbes, true
	}
	return false, false
}

// start registers an admitted call; probe is admits' second result.
func (b *breaker) start(probe bool) {
	if probe {
		b.probes++
	}
}

// abandon ends a call that produced no verdict (the caller gave up).
func (b *breaker) abandon(probe bool) {
	if probe && b.probes > 0 {
		b.probes--
	}
}

// record ends a call with its verdict.
func (b *breaker) record(now time.Time, cfg BreakerConfig, failed, probe bool, rng *rand.Rand) {
	if cfg.Disabled {
		return
	}
	b.abandon(probe)
	if b.current(now) == BreakerHalfOpen {
		if !probe {
			return // a call admitted before the trip; the probes decide
		}
		if failed {
			b.trip(now, cfg, rng)
			return
		}
		if b.probeOK++; b.probeOK >= cfg.HalfOpenProbes {
			b.close()
		}
		return
	}
	if b.state == BreakerOpen {
		return // late answers of calls started before the trip
	}
	fail := 0.0
	if failed {
		fail = 1
		b.consecutive++
	} else {
		b.consecutive = 0
	}
	b.win.add(now, cfg.Window, 1, fail)
	calls, failures := b.win.sum(now, cfg.Window)
	if (cfg.ConsecutiveFailures > 0 && b.consecutive >= cfg.ConsecutiveFailures) ||
		(calls >= float64(cfg.MinRequests) && calls > 0 && failures/calls >= cfg.FailureRate) {
		b.trip(now, cfg, rng)
	}
}

func (b *breaker) trip(now time.Time, cfg BreakerConfig, rng *rand.Rand) {
	b.trips++
	d := cfg.OpenDuration
	for i := 1; i < b.trips && d < cfg.MaxOpenDuration; i++ {
		d *= 2
	}
	d = min(d, cfg.MaxOpenDuration)
	if cfg.OpenJitter > 0 {
		d = time.Duration(float64(d) * (1 + cfg.OpenJitter*(2*rng.Float64()-1)))
	}
	b.state, b.openUntil, b.probes, b.probeOK = BreakerOpen, now.Add(d), 0, 0
}

func (b *breaker) close() {
	b.state, b.consecutive, b.trips, b.probes, b.probeOK = BreakerClosed, 0, 0, 0, 0
	b.win = rolling{}
}
