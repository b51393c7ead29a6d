package routing

import (
	"math"
	"time"
)

// endpoint is what the router knows about one agent for one capability: its
// own measurements and the breaker. Guarded by Router.mu.
type endpoint struct {
	// Peak-EWMA latency in nanoseconds (Linkerd, after Finagle): a sample
	// above the estimate replaces it at once, lower samples are averaged
	// in, and the estimate decays toward zero while the agent is idle so
	// that an agent once slow is eventually tried again.
	rtt      float64
	rttStamp time.Time
	// Decayed success and failure counts.
	succ, fail float64
	rateStamp  time.Time
	inFlight   int
	lastUsed   time.Time
	brk        breaker
	key        epKey // for the Observer's labels
}

type epKey struct{ agent, capability string }

// statsTuning holds the router-wide measurement parameters from Config.
type statsTuning struct {
	decay      time.Duration // peak-EWMA time constant
	halfLife   time.Duration // success-count half-life
	fresh      time.Duration // own samples younger than this beat gossip
	defaultRTT time.Duration
	prior      float64 // pseudo-observations the gossiped (or assumed) rate is worth
}

func (e *endpoint) decayedRTT(now time.Time, t statsTuning) float64 {
	if e.rttStamp.IsZero() {
		return 0
	}
	el := now.Sub(e.rttStamp)
	if el <= 0 {
		return e.rtt
	}
	return e.rtt * math.Exp(-float64(el)/float64(t.decay))
}

func (e *endpoint) observeRTT(now time.Time, rtt time.Duration, t statsTuning) {
	cur := e.decayedRTT(now, t)
	x := float64(max(rtt, 1))
	if e.rttStamp.IsZero() || x > cur {
		e.rtt = x
	} else {
		w := math.Exp(-float64(max(now.Sub(e.rttStamp), 0)) / float64(t.decay))
		// Weight each sample at least 5% so a busy agent's estimate follows
		// its samples even when they arrive microseconds apart.
		w = min(w, 0.95)
		e.rtt = cur*w + x*(1-w)
	}
	e.rttStamp = now
}

func (e *endpoint) decayCounts(now time.Time, t statsTuning) {
	if el := now.Sub(e.rateStamp); el > 0 && !e.rateStamp.IsZero() {
		f := math.Exp2(-float64(el) / float64(t.halfLife))
		e.succ *= f
		e.fail *= f
	}
	e.rateStamp = now
}

func (e *endpoint) observeOutcome(now time.Time, failed bool, t statsTuning) {
	e.decayCounts(now, t)
	if failed {
		e.fail++
	} else {
		e.succ++
	}
}

// latency merges the router's own estimate with gossip: own when fresh,
// else gossip, else the default for unmeasured agents.
func (e *endpoint) latency(now time.Time, c *Candidate, t statsTuning) float64 {
	if !e.rttStamp.IsZero() && now.Sub(e.rttStamp) < t.fresh {
		return e.decayedRTT(now, t)
	}
	if c.Load.EWMALatency > 0 {
		return float64(c.Load.EWMALatency)
	}
	if !e.rttStamp.IsZero() {
		return e.decayedRTT(now, t)
	}
	return float64(t.defaultRTT)
}

// successRate is a Bayesian merge: the gossiped rate (or 1 when unknown) is
// the prior, worth t.prior observations; the router's own decayed counts
// outweigh it as they accumulate and fade back to it as they age.
func (e *endpoint) successRate(now time.Time, c *Candidate, t statsTuning) float64 {
	prior := 1.0
	if c.Load.HasSuccessRate {
		prior = min(max(c.Load.SuccessRate, 0), 1)
	}
	s, f := e.succ, e.fail
	if el := now.Sub(e.rateStamp); el > 0 && !e.rateStamp.IsZero() {
		d := math.Exp2(-float64(el) / float64(t.halfLife))
		s, f = s*d, f*d
	}
	return (s + prior*t.prior) / (s + f + t.prior)
}

// inFlightMerged is the larger of our own in-flight count and the gossiped
// one: gossip sees other callers' calls, ours is never stale.
func (e *endpoint) inFlightMerged(c *Candidate) int { return max(e.inFlight, c.Load.InFlight) }

// EndpointStats is a snapshot of the router's view of one agent.
type EndpointStats struct {
	AgentID, Capability string
	Latency             time.Duration // merged estimate
	SuccessRate         float64       // merged estimate
	InFlight            int           // this router's calls in flight
	Breaker             BreakerState
}
