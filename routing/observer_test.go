package routing

import (
	"context"
	"slices"
	"testing"
	"time"
)

// recorder is an Observer that remembers what it heard.
type recorder struct {
	transitions []string
	exhausted   int
	picked      map[bool]int
}

func (r *recorder) BreakerChanged(agent, capability string, from, to BreakerState) {
	r.transitions = append(r.transitions, agent+" "+capability+" "+from.String()+"->"+to.String())
}
func (r *recorder) RetryBudgetExhausted(string) { r.exhausted++ }
func (r *recorder) Decided(_ PolicyName, picked bool) {
	r.picked[picked]++
}

// The observer hears a failing agent's breaker go through every state,
// the lazy open -> half-open included, in order.
func TestObserverHearsBreakerTransitions(t *testing.T) {
	clock := newFakeClock()
	rec := &recorder{picked: map[bool]int{}}
	r := newTestRouter(t, clock, 21, func(c *Config) { c.Observer = rec })
	cs := cands(2)
	sim := newSim(clock, 1, map[string]simAgent{"a00": {latency: time.Millisecond, fail: 1}, "a01": {latency: time.Millisecond}})
	p := policyNamed(RoundRobin)
	p.HardFloor, p.QualityTiers = 0, nil
	p.Breaker.OpenJitter = 0
	req := Request{Capability: "cap", Policy: p, Meta: Metadata{Idempotent: true}}
	for range 100 {
		if _, err := r.Route(context.Background(), req, cs, sim); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(6 * time.Second)
	sim.agents["a00"] = simAgent{latency: time.Millisecond}
	for range 10 {
		if _, err := r.Route(context.Background(), req, cs, sim); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"a00 cap closed->open", "a00 cap open->half-open", "a00 cap half-open->closed"}
	if !slices.Equal(rec.transitions, want) {
		t.Fatalf("transitions %v, want %v", rec.transitions, want)
	}
	if rec.picked[true] < 110 || rec.picked[false] != 0 {
		t.Fatalf("decisions %v, want one pick per attempt (at least 110) and no failures", rec.picked)
	}
}

// A spent retry budget is heard once per refused retry.
func TestObserverHearsExhaustedBudget(t *testing.T) {
	clock := newFakeClock()
	rec := &recorder{picked: map[bool]int{}}
	r := newTestRouter(t, clock, 31, func(c *Config) { c.Observer = rec })
	sim := newSim(clock, 2, map[string]simAgent{"a00": {latency: time.Millisecond, fail: 1}})
	p := policyNamed(Latency)
	p.Breaker.Disabled = true
	p.HardFloor, p.QualityTiers = 0, nil
	p.Retry.MaxAttempts = 5
	req := Request{Capability: "cap", Policy: p, Meta: Metadata{Idempotent: true}}
	for range 2000 {
		r.Route(context.Background(), req, cands(1), sim)
		clock.Advance(4 * time.Millisecond)
	}
	if rec.exhausted == 0 {
		t.Fatal("no exhausted budget heard for an agent failing every call")
	}
	// Spent, it has (almost) nothing left; a quiet window refills it to the floor.
	if left := r.RetryBudgets()["cap"]; left >= 1 {
		t.Fatalf("budget left %v right after it was spent, want under 1", left)
	}
	clock.Advance(2 * p.Retry.BudgetWindow)
	if left, floor := r.RetryBudgets()["cap"], p.Retry.MinRetriesPerSec*p.Retry.BudgetWindow.Seconds(); left != floor {
		t.Fatalf("budget left %v after a quiet window, want the floor %v", left, floor)
	}
}
