package routing

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var okInvoker = InvokerFunc(func(context.Context, Attempt) (bool, error) { return true, nil })

func policyNamed(n PolicyName) Policy {
	p := DefaultPolicy()
	p.Name = n
	p.Locality = LocalityNone
	return p
}

// routeOnce routes one call that succeeds and returns the chosen agent.
func routeOnce(t testing.TB, r *Router, req Request, cs []Candidate) string {
	t.Helper()
	res, err := r.Route(context.Background(), req, cs, okInvoker)
	if err != nil {
		t.Fatalf("Route: %v", err)
	}
	return res.Agent.AgentID
}

func TestRoundRobinIsEven(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 1)
	cs := cands(4)
	count := map[string]int{}
	req := Request{Capability: "cap", Policy: policyNamed(RoundRobin)}
	for range 400 {
		count[routeOnce(t, r, req, cs)]++
	}
	for _, c := range cs {
		if count[c.AgentID] != 100 {
			t.Fatalf("round robin uneven: %v", count)
		}
	}
}

// Property: with two candidates, P2C always picks the less loaded.
func TestLeastLoadedPicksLessLoaded(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := newTestRouter(t, newFakeClock(), 2)
	req := Request{Capability: "cap", Policy: policyNamed(LeastLoaded)}
	for range 500 {
		cs := cands(2)
		cs[0].Load = GossipLoad{InFlight: rng.IntN(50), Capacity: 100}
		cs[1].Load = GossipLoad{InFlight: rng.IntN(50), Capacity: 100}
		if cs[0].Load.InFlight == cs[1].Load.InFlight {
			continue
		}
		want := cs[0].AgentID
		if cs[1].Load.InFlight < cs[0].Load.InFlight {
			want = cs[1].AgentID
		}
		if got := routeOnce(t, r, req, cs); got != want {
			t.Fatalf("picked %s with loads %d/%d", got, cs[0].Load.InFlight, cs[1].Load.InFlight)
		}
	}
}

// Least loaded, many candidates: the most loaded agent is never chosen (P2C
// can only pick the worst if both samples are the worst).
func TestLeastLoadedNeverPicksMostLoaded(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 5)
	cs := cands(10)
	for i := range cs {
		cs[i].Load = GossipLoad{InFlight: i, Capacity: 20}
	}
	req := Request{Capability: "cap", Policy: policyNamed(LeastLoaded)}
	for range 1000 {
		if got := routeOnce(t, r, req, cs); got == "a09" {
			t.Fatal("picked the most loaded agent")
		}
	}
}

func TestLatencyAvoidsSlowAgents(t *testing.T) {
	clock := newFakeClock()
	r := newTestRouter(t, clock, 6)
	cs := cands(10)
	agents := map[string]simAgent{}
	for i, c := range cs {
		lat := 10 * time.Millisecond
		if i < 4 {
			lat = 100 * time.Millisecond
		}
		agents[c.AgentID] = simAgent{latency: lat}
	}
	sim := newSim(clock, 6, agents)
	req := Request{Capability: "cap", Policy: policyNamed(Latency)}
	for range 2000 {
		if _, err := r.Route(context.Background(), req, cs, sim); err != nil {
			t.Fatal(err)
		}
	}
	slow := sim.attempts["a00"] + sim.attempts["a01"] + sim.attempts["a02"] + sim.attempts["a03"]
	if slow > 100 { // 5%; round robin would send 800
		t.Fatalf("latency policy sent %d of 2000 calls to slow agents: %v", slow, sim.attempts)
	}
}

func TestLatencyUsesGossipBeforeOwnSamples(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 7)
	cs := cands(2)
	cs[0].Load.EWMALatency = 500 * time.Millisecond
	cs[1].Load.EWMALatency = 5 * time.Millisecond
	req := Request{Capability: "cap", Policy: policyNamed(Latency)}
	for range 50 {
		if got := routeOnce(t, r, req, cs); got != "a01" {
			t.Fatalf("picked %s despite gossiped latency", got)
		}
	}
}

func TestCostPicksCheapestTiesByLatency(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 8)
	cs := cands(4)
	cs[0].Capability.Cost, cs[1].Capability.Cost, cs[2].Capability.Cost, cs[3].Capability.Cost = 5, 1, 1, 0.5
	cs[3].Capability.Proficiency = ProficiencyNovice // cheapest but not proficient enough
	cs[1].Load.EWMALatency = 200 * time.Millisecond
	cs[2].Load.EWMALatency = 20 * time.Millisecond
	req := Request{Capability: "cap", Policy: policyNamed(Cost), Overrides: Overrides{MinProficiency: ProficiencyExperienced}}
	for range 50 {
		if got := routeOnce(t, r, req, cs); got != "a02" {
			t.Fatalf("cost picked %s, want a02 (cheapest proficient, faster of the tie)", got)
		}
	}
	// Max cost excludes: nothing at or below 0.9 is proficient.
	req.Overrides.MaxCost, req.Overrides.HasMaxCost = 0.9, true
	_, err := r.Route(context.Background(), req, cs, okInvoker)
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "max cost") {
		t.Fatalf("max cost error = %v", err)
	}
}

// Property: whatever the success rates, no call is ever routed to an agent
// whose success rate is below the hard floor, and the best tier is used.
func TestNeverBelowQualityFloor(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, name := range PolicyNames {
		for trial := range 300 {
			r := newTestRouter(t, newFakeClock(), uint64(trial))
			cs := cands(1 + rng.IntN(6))
			best := 0.0
			for i := range cs {
				cs[i].Load.SuccessRate, cs[i].Load.HasSuccessRate = rng.Float64(), true
				best = max(best, cs[i].Load.SuccessRate)
			}
			req := Request{Capability: "cap", Policy: policyNamed(name)}
			res, err := r.Route(context.Background(), req, cs, okInvoker)
			if best < 0.7 {
				if !errors.Is(err, ErrBelowQualityFloor) || status.Code(err) != codes.Unavailable {
					t.Fatalf("%s trial %d: all below floor, got %v", name, trial, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s trial %d: %v", name, trial, err)
			}
			// A fresh router has no samples of its own: its estimate is gossip's.
			got := res.Agent.Load.SuccessRate
			if got < 0.7 {
				t.Fatalf("%s routed to %s with success rate %v", name, res.Agent.AgentID, got)
			}
			for _, tier := range []float64{0.95, 0.90} {
				if best >= tier+0.01 && got < tier-0.01 {
					t.Fatalf("%s picked rate %v though an agent at %v meets tier %v", name, got, best, tier)
				}
			}
		}
	}
}

func TestPreferenceFirst(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 11)
	cs := cands(5)
	req := Request{Capability: "cap", Policy: policyNamed(Latency), Overrides: Overrides{PreferredAgents: []string{"a03", "zz"}}}
	for range 50 {
		if got := routeOnce(t, r, req, cs); got != "a03" {
			t.Fatalf("picked %s, want preferred a03", got)
		}
	}
	cs[3].Ready = false
	if got := routeOnce(t, r, req, cs); got == "a03" {
		t.Fatal("picked a preferred agent that is not ready")
	}
}

func TestLocality(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 12)
	cs := cands(5)
	cs[2].Node = "n0" // the router's LocalNode
	p := DefaultPolicy()
	req := Request{Capability: "cap", Policy: p}
	for range 50 {
		if got := routeOnce(t, r, req, cs); got != "a02" {
			t.Fatalf("picked %s, want local a02", got)
		}
	}
	// A saturated local agent spills over to remote ones.
	cs[2].Load = GossipLoad{InFlight: 9, Capacity: 10}
	if got := routeOnce(t, r, req, cs); got == "a02" {
		t.Fatal("picked the saturated local agent")
	}
	// Local only refuses remote agents.
	cs[2].Ready = false
	p.Locality = LocalityOnly
	_, err := r.Route(context.Background(), Request{Capability: "cap", Policy: p}, cs, okInvoker)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("local-only with the local agent down: %v", err)
	}
}

func TestProficiencyMatching(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 13)
	cs := cands(3)
	cs[0].Capability.Proficiency = ProficiencyNovice
	cs[1].Capability.Proficiency = ProficiencyExperienced
	cs[2].Capability.Proficiency = ProficiencyExpert
	for i := range cs {
		cs[i].Load.Capacity = 10
	}
	p := policyNamed(RoundRobin)
	count := func(complexity int) map[string]int {
		m := map[string]int{}
		for range 30 {
			m[routeOnce(t, r, Request{Capability: "cap", Policy: p, Overrides: Overrides{Complexity: complexity}}, cs)]++
		}
		return m
	}
	if m := count(8); m["a02"] != 30 {
		t.Fatalf("complexity 8 needs an expert: %v", m)
	}
	if m := count(5); m["a01"] != 30 {
		t.Fatalf("complexity 5: experienced only, expert kept free: %v", m)
	}
	if m := count(1); m["a02"] != 0 || m["a00"] == 0 || m["a01"] == 0 {
		t.Fatalf("complexity 1: novice and experienced share, expert kept free: %v", m)
	}
	// Non-experts saturated: the expert helps out.
	cs[0].Load.InFlight, cs[1].Load.InFlight = 9, 9
	if m := count(1); m["a02"] == 0 {
		t.Fatalf("expert not used although the others are saturated: %v", m)
	}
}

func TestExclusionsAndErrors(t *testing.T) {
	base := func() []Candidate { return cands(3) }
	cases := []struct {
		name     string
		mod      func([]Candidate)
		req      func(*Request)
		code     codes.Code
		sentinel error
		msg      string
	}{
		{"no such capability", nil, func(r *Request) { r.Capability = "nope" }, codes.NotFound, ErrNoCapability, `"nope"`},
		{"constraints", func(c []Candidate) { c[0].Capability.Attributes = map[string]string{"region": "us"} },
			func(r *Request) { r.Constraints = []Constraint{{Key: "region", Op: OpEquals, Values: []string{"eu"}}} }, codes.NotFound, ErrNoCapability, "region=eu"},
		{"not ready", func(c []Candidate) {
			for i := range c {
				c[i].Ready = false
			}
		}, nil, codes.Unavailable, ErrNoneAvailable, "3 not ready"},
		{"draining", func(c []Candidate) {
			for i := range c {
				c[i].Draining = true
			}
		}, nil, codes.Unavailable, ErrNoneAvailable, "3 draining"},
		{"dead nodes", func(c []Candidate) {
			for i := range c {
				c[i].NodeAlive = false
			}
		}, nil, codes.Unavailable, ErrNoneAvailable, "3 on dead nodes"},
		{"all busy", func(c []Candidate) {
			for i := range c {
				c[i].Capability.MaxConcurrency = 2
				c[i].Load.InFlight = 2
			}
		}, nil, codes.Unavailable, ErrNoneAvailable, "at capacity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t, newFakeClock(), 14)
			cs := base()
			if tc.mod != nil {
				tc.mod(cs)
			}
			req := Request{Capability: "cap"}
			if tc.req != nil {
				tc.req(&req)
			}
			_, err := r.Route(context.Background(), req, cs, okInvoker)
			if status.Code(err) != tc.code || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v (code %v), want %v %v containing %q", err, status.Code(err), tc.code, tc.sentinel, tc.msg)
			}
		})
	}
}

func TestConstraintMatch(t *testing.T) {
	attrs := map[string]string{"region": "eu", "gpu": "a100", "max_tokens": "8000", "bad": "x"}
	cases := []struct {
		c    Constraint
		want bool
	}{
		{Constraint{Key: "region", Op: OpEquals, Values: []string{"eu"}}, true},
		{Constraint{Key: "region", Op: OpEquals, Values: []string{"us"}}, false},
		{Constraint{Key: "missing", Op: OpEquals, Values: []string{""}}, false},
		{Constraint{Key: "region", Op: OpNotEquals, Values: []string{"us"}}, true},
		{Constraint{Key: "missing", Op: OpNotEquals, Values: []string{"us"}}, true},
		{Constraint{Key: "gpu", Op: OpIn, Values: []string{"h100", "a100"}}, true},
		{Constraint{Key: "gpu", Op: OpIn, Values: []string{"h100"}}, false},
		{Constraint{Key: "gpu", Op: OpNotIn, Values: []string{"h100"}}, true},
		{Constraint{Key: "gpu", Op: OpNotIn, Values: []string{"a100"}}, false},
		{Constraint{Key: "max_tokens", Op: OpRange, Min: 4000, Max: 8000}, true},
		{Constraint{Key: "max_tokens", Op: OpRange, Min: 8001, Max: 1e9}, false},
		{Constraint{Key: "bad", Op: OpRange, Min: -1e9, Max: 1e9}, false},
		{Constraint{Key: "missing", Op: OpRange, Min: -1e9, Max: 1e9}, false},
		{Constraint{Key: "gpu", Op: OpExists}, true},
		{Constraint{Key: "missing", Op: OpExists}, false},
		{Constraint{Key: "gpu"}, false},
	}
	for _, tc := range cases {
		if got := tc.c.Match(attrs); got != tc.want {
			t.Errorf("%v.Match = %v, want %v", tc.c, got, tc.want)
		}
	}
}

func TestCandidateOrderDoesNotMatterForRoundRobin(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 15)
	cs := cands(3)
	rev := []Candidate{cs[2], cs[1], cs[0]}
	req := Request{Capability: "cap", Policy: policyNamed(RoundRobin)}
	var got []string
	for i := range 6 {
		list := cs
		if i%2 == 1 {
			list = rev
		}
		got = append(got, routeOnce(t, r, req, list))
	}
	if fmt.Sprint(got) != "[a00 a01 a02 a00 a01 a02]" {
		t.Fatalf("round robin order = %v", got)
	}
}

// Property: with agents that really fail at random rates, the router's own
// merged estimate of every agent it invokes is at or above the hard floor
// (breakers off, so no probe may bypass the floor).
func TestNeverBelowQualityFloorMeasured(t *testing.T) {
	for seed := range uint64(20) {
		clock := newFakeClock()
		r := newTestRouter(t, clock, seed)
		rng := rand.New(rand.NewPCG(seed, 99))
		cs := cands(6)
		agents := map[string]simAgent{}
		for _, c := range cs {
			agents[c.AgentID] = simAgent{latency: time.Millisecond, fail: rng.Float64()}
		}
		sim := newSim(clock, seed, agents)
		p := policyNamed(PolicyNames[seed%4])
		p.Breaker.Disabled = true
		checked := 0
		inv := InvokerFunc(func(ctx context.Context, a Attempt) (bool, error) {
			st, ok := r.Stats(a.Candidate.AgentID, "cap", a.Candidate)
			if !ok || st.SuccessRate < p.HardFloor {
				t.Fatalf("seed %d: invoked %s with estimated success %v", seed, a.Candidate.AgentID, st.SuccessRate)
			}
			checked++
			return sim.attempt(ctx, a)
		})
		refused := 0
		for range 500 {
			_, err := r.Route(context.Background(), Request{Capability: "cap", Policy: p, Meta: Metadata{Idempotent: true}}, cs, inv)
			if errors.Is(err, ErrBelowQualityFloor) {
				refused++ // every agent is below the floor right now
			}
			clock.Advance(10 * time.Millisecond)
		}
		if checked == 0 || checked+refused < 500 {
			t.Fatalf("seed %d: %d attempts, %d refusals for 500 calls", seed, checked, refused)
		}
	}
}
