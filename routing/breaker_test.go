package routing

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// step is one event of a breaker scenario.
type step struct {
	advance time.Duration
	op      string // "ok", "fail", "probe-ok", "probe-fail", "check"
	want    BreakerState
	admits  bool
}

func runBreaker(t *testing.T, cfg BreakerConfig, steps []step) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(1000, 0)
	var b breaker
	for i, s := range steps {
		now = now.Add(s.advance)
		ok, probe := b.admits(now, cfg)
		switch s.op {
		case "ok", "fail":
			if !ok || probe {
				t.Fatalf("step %d: %s not admitted as a normal call (ok=%v probe=%v)", i, s.op, ok, probe)
			}
			b.start(false)
			b.record(now, cfg, s.op == "fail", false, rng)
		case "probe-ok", "probe-fail":
			if !ok || !probe {
				t.Fatalf("step %d: %s not admitted as a probe (ok=%v probe=%v)", i, s.op, ok, probe)
			}
			b.start(true)
			b.record(now, cfg, s.op == "probe-fail", true, rng)
		case "check":
			if ok != s.admits {
				t.Fatalf("step %d: admits = %v, want %v", i, ok, s.admits)
			}
		}
		if got := b.current(now); got != s.want {
			t.Fatalf("step %d (%s): state %v, want %v", i, s.op, got, s.want)
		}
	}
}

func rep(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func cat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestBreakerStateMachine(t *testing.T) {
	cfg := DefaultBreaker()
	cfg.OpenJitter = 0
	closed, open, half := BreakerClosed, BreakerOpen, BreakerHalfOpen
	tripped := cat(rep(4, step{op: "fail", want: closed}), []step{{op: "fail", want: open}})
	cases := []struct {
		name  string
		cfg   BreakerConfig
		steps []step
	}{
		{"four failures stay closed", cfg, rep(4, step{op: "fail", want: closed})},
		{"five consecutive failures trip", cfg, cat(rep(4, step{op: "fail", want: closed}), []step{{op: "fail", want: open}, {op: "check", want: open, admits: false}})},
		{"a success resets the run", cfg, cat(rep(4, step{op: "fail", want: closed}), []step{{op: "ok", want: closed}}, rep(4, step{op: "fail", want: closed}))},
		{"open until open duration, then half-open", cfg, cat(tripped,
			[]step{{advance: 4999 * time.Millisecond, op: "check", want: open}, {advance: time.Millisecond, op: "check", want: half, admits: true}})},
		{"probe success closes", cfg, cat(tripped,
			[]step{{advance: 5 * time.Second, op: "probe-ok", want: closed}, {op: "ok", want: closed}})},
		{"probe failure reopens for twice as long", cfg, cat(tripped, []step{
			{advance: 5 * time.Second, op: "probe-fail", want: open},
			{advance: 9 * time.Second, op: "check", want: open},
			{advance: time.Second, op: "check", want: half, admits: true},
			{op: "probe-fail", want: open},
			{advance: 19 * time.Second, op: "check", want: open},
			{advance: time.Second, op: "probe-ok", want: closed}})},
		{"rate trips with enough calls", func() BreakerConfig { c := cfg; c.ConsecutiveFailures = 100; return c }(),
			cat(rep(10, step{op: "ok", want: closed}), rep(9, step{op: "fail", want: closed}), []step{{op: "fail", want: open}})},
		{"rate needs min requests", func() BreakerConfig { c := cfg; c.ConsecutiveFailures = 100; return c }(),
			cat(rep(2, step{op: "ok", want: closed}), rep(2, step{op: "fail", want: closed}), []step{{op: "ok", want: closed}, {op: "fail", want: closed}})},
		{"rate forgets old calls", func() BreakerConfig { c := cfg; c.ConsecutiveFailures = 100; return c }(),
			cat(rep(10, step{op: "fail", want: closed}), []step{{advance: 11 * time.Second, op: "ok", want: closed}}, rep(10, step{op: "ok", want: closed}), rep(9, step{op: "fail", want: closed}))},
		{"disabled never opens", func() BreakerConfig { c := cfg; c.Disabled = true; return c }(), rep(50, step{op: "fail", want: closed})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runBreaker(t, tc.cfg, tc.steps) })
	}
}

func TestBreakerHalfOpenLimitsProbes(t *testing.T) {
	cfg := DefaultBreaker()
	cfg.HalfOpenProbes = 2
	cfg.OpenJitter = 0
	rng := rand.New(rand.NewPCG(1, 1))
	now := time.Unix(0, 0)
	var b breaker
	for range 5 {
		b.record(now, cfg, true, false, rng)
	}
	now = now.Add(cfg.OpenDuration)
	for i := range 2 {
		ok, probe := b.admits(now, cfg)
		if !ok || !probe {
			t.Fatalf("probe %d refused", i)
		}
		b.start(probe)
	}
	if ok, _ := b.admits(now, cfg); ok {
		t.Fatal("third concurrent probe admitted")
	}
	b.abandon(true) // a caller gave up: the slot frees, no verdict
	if ok, _ := b.admits(now, cfg); !ok {
		t.Fatal("slot not freed by abandon")
	}
	b.start(true)
	b.record(now, cfg, false, true, rng)
	if b.current(now) != BreakerHalfOpen {
		t.Fatal("one success of two closed the breaker")
	}
	b.record(now, cfg, false, true, rng)
	if b.current(now) != BreakerClosed {
		t.Fatal("two probe successes did not close the breaker")
	}
}

// Property: the jittered open time stays within +/-jitter of the doubled duration.
func TestBreakerJitterBounds(t *testing.T) {
	cfg := DefaultBreaker()
	rng := rand.New(rand.NewPCG(5, 5))
	seen := map[time.Duration]bool{}
	for trips := 1; trips <= 6; trips++ {
		for range 200 {
			b := breaker{trips: trips - 1}
			now := time.Unix(0, 0)
			b.trip(now, cfg, rng)
			base := min(cfg.OpenDuration<<(trips-1), cfg.MaxOpenDuration)
			d := b.openUntil.Sub(now)
			lo, hi := time.Duration(float64(base)*(1-cfg.OpenJitter)), time.Duration(float64(base)*(1+cfg.OpenJitter))
			if d < lo || d > hi {
				t.Fatalf("trip %d: open %v outside [%v, %v]", trips, d, lo, hi)
			}
			seen[d] = true
		}
	}
	if len(seen) < 100 {
		t.Fatalf("jitter produced only %d distinct durations", len(seen))
	}
}

// Through the router: an always-failing agent is cut off by its breaker,
// probed after the open time, and readmitted once it recovers.
func TestRouterBreakerLifecycle(t *testing.T) {
	clock := newFakeClock()
	r := newTestRouter(t, clock, 21)
	cs := cands(2)
	sim := newSim(clock, 1, map[string]simAgent{
		"a00": {latency: time.Millisecond, fail: 1},
		"a01": {latency: time.Millisecond},
	})
	p := policyNamed(RoundRobin)
	p.HardFloor, p.QualityTiers = 0, nil // isolate the breaker from the quality floor
	p.Breaker.OpenJitter = 0
	req := Request{Capability: "cap", Policy: p, Meta: Metadata{Idempotent: true}}
	for range 100 {
		if _, err := r.Route(context.Background(), req, cs, sim); err != nil {
			t.Fatalf("caller saw an error: %v", err)
		}
	}
	if st, _ := r.Stats("a00", "cap", cs[0]); st.Breaker != BreakerOpen {
		t.Fatalf("breaker of failing agent is %v", st.Breaker)
	}
	if got := sim.attempts["a00"]; got != 5 {
		t.Fatalf("failing agent got %d attempts; the breaker should stop it at 5", got)
	}
	// After the open time one call probes it; it has recovered.
	clock.Advance(6 * time.Second)
	sim.agents["a00"] = simAgent{latency: time.Millisecond}
	res, err := r.Route(context.Background(), req, cs, sim)
	if err != nil || res.Agent.AgentID != "a00" {
		t.Fatalf("probe went to %s (%v), want a00", res.Agent.AgentID, err)
	}
	if st, _ := r.Stats("a00", "cap", cs[0]); st.Breaker != BreakerClosed {
		t.Fatalf("breaker after a good probe is %v", st.Breaker)
	}
}

// All agents circuit-open: Unavailable, or the fallback capability.
func TestAllOpenFallback(t *testing.T) {
	clock := newFakeClock()
	fb := cand("fb1", "n9")
	fb.Capability.Name = "cap.fallback"
	res := resolverFunc(func(_ context.Context, c string) ([]Candidate, Policy, error) {
		if c != "cap.fallback" {
			return nil, Policy{}, errors.New("unknown")
		}
		return []Candidate{fb}, DefaultPolicy(), nil
	})
	for _, withFallback := range []bool{false, true} {
		r := newTestRouter(t, clock, 22, func(c *Config) { c.Resolver = res })
		cs := cands(2)
		fail := InvokerFunc(func(_ context.Context, a Attempt) (bool, error) {
			if a.Candidate.AgentID == "fb1" {
				return true, nil
			}
			return false, status.Error(codes.Unavailable, "down")
		})
		p := policyNamed(Latency)
		p.Retry.MaxAttempts = 1
		if withFallback {
			p.Fallback = "cap.fallback"
		}
		req := Request{Capability: "cap", Policy: p}
		for range 10 {
			_, _ = r.Route(context.Background(), req, cs, fail)
		}
		out, err := r.Route(context.Background(), req, cs, fail)
		if !withFallback {
			if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrAllCircuitsOpen) {
				t.Fatalf("all open without fallback: %v", err)
			}
			continue
		}
		if err != nil || out.Agent.AgentID != "fb1" || out.Capability != "cap.fallback" {
			t.Fatalf("fallback: %+v, %v", out, err)
		}
	}
}

type resolverFunc func(context.Context, string) ([]Candidate, Policy, error)

func (f resolverFunc) Resolve(ctx context.Context, c string) ([]Candidate, Policy, error) {
	return f(ctx, c)
}
