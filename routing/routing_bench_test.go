package routing

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Routing-quality benchmarks: the real Router against simulated agents
// (seeded latency, cost and failure) in simulated time. Each iteration runs
// the scenario once with the policy under test and once with the baseline,
// and reports both and their ratio.

type simSpec struct {
	n       int
	latency time.Duration
	cost    float64
	fail    float64
	started bool
}

type scenarioResult struct {
	calls, errors, attempts, retries, failures int
	meanLatency                                time.Duration
	spent                                      float64
	elapsed                                    time.Duration
}

func (s scenarioResult) errorRate() float64   { return float64(s.errors) / float64(s.calls) }
func (s scenarioResult) successRate() float64 { return 1 - s.errorRate() }

func (s scenarioResult) attemptSuccess() float64 {
	return 1 - float64(s.failures)/float64(s.attempts)
}

// runScenario routes calls sequentially; gap is the idle time between calls.
func runScenario(tb testing.TB, seed uint64, specs []simSpec, p Policy, calls int, gap time.Duration) scenarioResult {
	clock := newFakeClock()
	r := newTestRouter(tb, clock, seed)
	var cs []Candidate
	agents := map[string]simAgent{}
	for gi, sp := range specs {
		for i := range sp.n {
			c := cand(fmt.Sprintf("g%d-%02d", gi, i), fmt.Sprintf("node%d-%d", gi, i))
			c.Capability.Cost = sp.cost
			cs = append(cs, c)
			agents[c.AgentID] = simAgent{latency: sp.latency, fail: sp.fail, started: sp.started, cost: sp.cost}
		}
	}
	sim := newSim(clock, seed+1, agents)
	var res scenarioResult
	var total time.Duration
	start := clock.Now()
	for i := range calls {
		t0 := clock.Now()
		req := Request{Capability: "cap", Policy: p, Meta: Metadata{IdempotencyKey: fmt.Sprint(i)}}
		if _, err := r.Route(context.Background(), req, cs, sim); err != nil {
			res.errors++
		}
		total += clock.Now().Sub(t0)
		clock.Advance(gap)
	}
	res.calls, res.attempts, res.retries, res.failures, res.spent = calls, sim.total, sim.retries, sim.failures, sim.spent
	res.meanLatency = total / time.Duration(calls)
	res.elapsed = clock.Now().Sub(start)
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// (1) Four of ten agents are 10x slower: latency vs round robin.
func BenchmarkQualityLatencyVsRoundRobin(b *testing.B) {
	specs := []simSpec{{n: 6, latency: 10 * time.Millisecond}, {n: 4, latency: 100 * time.Millisecond}}
	var lat, rr scenarioResult
	for i := 0; b.Loop(); i++ {
		lat = runScenario(b, uint64(i), specs, policyNamed(Latency), 5000, 5*time.Millisecond)
		rr = runScenario(b, uint64(i), specs, policyNamed(RoundRobin), 5000, 5*time.Millisecond)
	}
	b.ReportMetric(ms(lat.meanLatency), "latency-mean-ms")
	b.ReportMetric(ms(rr.meanLatency), "baseline-rr-mean-ms")
	b.ReportMetric(float64(lat.meanLatency)/float64(rr.meanLatency), "ratio")
	b.ReportMetric(100*(1-float64(lat.meanLatency)/float64(rr.meanLatency)), "cut-pct")
}

// (2) Cheap (1) and expensive (10) agents, plus a cheapest (0.5) agent that
// fails 40% of calls: cost vs round robin, total cost and success.
func BenchmarkQualityCostVsRoundRobin(b *testing.B) {
	specs := []simSpec{
		{n: 4, latency: 20 * time.Millisecond, cost: 1, fail: 0.01},
		{n: 4, latency: 15 * time.Millisecond, cost: 10, fail: 0.01},
		{n: 1, latency: 20 * time.Millisecond, cost: 0.5, fail: 0.4},
	}
	var cost, rr scenarioResult
	for i := 0; b.Loop(); i++ {
		cost = runScenario(b, uint64(i), specs, policyNamed(Cost), 5000, 5*time.Millisecond)
		rr = runScenario(b, uint64(i), specs, policyNamed(RoundRobin), 5000, 5*time.Millisecond)
	}
	b.ReportMetric(cost.spent, "cost-total")
	b.ReportMetric(rr.spent, "baseline-rr-cost-total")
	b.ReportMetric(cost.spent/rr.spent, "ratio")
	b.ReportMetric(100*(1-cost.spent/rr.spent), "cut-pct")
	b.ReportMetric(100*cost.successRate(), "success-pct")
	b.ReportMetric(100*rr.successRate(), "baseline-rr-success-pct")
	b.ReportMetric(100*cost.attemptSuccess(), "attempt-success-pct")
	b.ReportMetric(100*rr.attemptSuccess(), "baseline-rr-attempt-success-pct")
}

// (3) One of five agents fails every call (after its handler started;
// calls carry idempotency keys): round robin with the default breakers,
// quality tiers and retries vs round robin without them. The default
// latency policy is reported too; it mostly avoids the agent by itself.
func BenchmarkQualityFailingAgent(b *testing.B) {
	specs := []simSpec{{n: 4, latency: 10 * time.Millisecond}, {n: 1, latency: 10 * time.Millisecond, fail: 1, started: true}}
	bare := policyNamed(RoundRobin)
	bare.Breaker.Disabled, bare.Retry.MaxAttempts, bare.HardFloor, bare.QualityTiers = true, 1, 0, nil
	p := policyNamed(RoundRobin)
	const calls = 20000
	var with, without, lat scenarioResult
	for i := 0; b.Loop(); i++ {
		with = runScenario(b, uint64(i), specs, p, calls, 20*time.Millisecond)
		without = runScenario(b, uint64(i), specs, bare, calls, 20*time.Millisecond)
		lat = runScenario(b, uint64(i), specs, policyNamed(Latency), calls, 20*time.Millisecond)
	}
	b.ReportMetric(100*lat.errorRate(), "latency-policy-error-pct")
	b.ReportMetric(float64(lat.retries), "latency-policy-retries")
	budget := p.Retry.BudgetRatio*float64(calls) + p.Retry.MinRetriesPerSec*with.elapsed.Seconds()
	b.ReportMetric(100*with.errorRate(), "error-pct")
	b.ReportMetric(100*without.errorRate(), "baseline-error-pct")
	b.ReportMetric(with.errorRate()/without.errorRate(), "ratio")
	b.ReportMetric(float64(with.retries), "retries")
	b.ReportMetric(budget, "retry-budget")
	b.ReportMetric(100*float64(with.retries)/float64(calls), "retry-pct-of-calls")
	within := 0.0
	if float64(with.retries) <= budget {
		within = 1
	}
	b.ReportMetric(within, "within-budget")
}

// Selection cost of one Route (one successful attempt) per policy and size.
func BenchmarkRouteSelect(b *testing.B) {
	for _, n := range []int{10, 100} {
		for _, name := range PolicyNames {
			b.Run(fmt.Sprintf("%s/candidates=%d", name, n), func(b *testing.B) {
				r := newTestRouter(b, newFakeClock(), 1)
				cs := cands(n)
				for i := range cs {
					cs[i].Load = GossipLoad{InFlight: i % 7, Capacity: 50, EWMALatency: time.Duration(10+i%13) * time.Millisecond, SuccessRate: 0.99, HasSuccessRate: true}
				}
				req := Request{Capability: "cap", Policy: policyNamed(name)}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := r.Route(ctx, req, cs, okInvoker); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
