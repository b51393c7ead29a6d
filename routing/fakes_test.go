package routing

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeClock is simulated time: Sleep advances it instead of blocking.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Advance(d)
	return nil
}

// After advances, like Sleep, and answers at once.
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.Advance(max(d, 0))
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}

func newTestRouter(t testing.TB, clock *fakeClock, seed uint64, mod ...func(*Config)) *Router {
	t.Helper()
	cfg := Config{Clock: clock, Rand: rand.New(rand.NewPCG(seed, seed^0x9e3779b9)), LocalNode: "n0"}
	for _, m := range mod {
		m(&cfg)
	}
	r, err := NewRouter(cfg)
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	return r
}

// cand builds a ready candidate for capability "cap" on node.
func cand(id, node string) Candidate {
	return Candidate{AgentID: id, Node: node, Ready: true, NodeAlive: true,
		Capability: CandidateCapability{Name: "cap", Proficiency: ProficiencyExperienced, Cost: 1}}
}

func cands(n int) []Candidate {
	out := make([]Candidate, n)
	for i := range out {
		out[i] = cand(fmt.Sprintf("a%02d", i), fmt.Sprintf("n%d", i+1))
	}
	return out
}

// simAgent is one simulated agent's behaviour.
type simAgent struct {
	latency time.Duration
	fail    float64 // probability of failure
	started bool    // failures happen after the handler started
	code    codes.Code
	cost    float64 // spent per attempt
}

// simInvoker simulates agents on the fake clock: each attempt advances time
// by the agent's latency (with seeded +/-20% jitter) and fails with the
// agent's probability.
type simInvoker struct {
	clock    *fakeClock
	rng      *rand.Rand
	agents   map[string]simAgent
	attempts map[string]int
	total    int
	retries  int
	failures int     // failed attempts
	spent    float64 // cost of all attempts
	seen     []Attempt
	record   bool
}

func newSim(clock *fakeClock, seed uint64, agents map[string]simAgent) *simInvoker {
	return &simInvoker{clock: clock, rng: rand.New(rand.NewPCG(seed, 7)), agents: agents, attempts: map[string]int{}}
}

func (s *simInvoker) Invoke(ctx context.Context, a Attempt) (*meshnodev1.CallResult, bool, error) {
	started, err := s.attempt(ctx, a)
	return nil, started, err
}

func (s *simInvoker) attempt(ctx context.Context, a Attempt) (bool, error) {
	s.total++
	if a.Number > 1 {
		s.retries++
	}
	s.attempts[a.Candidate.AgentID]++
	if s.record {
		s.seen = append(s.seen, a)
	}
	ag := s.agents[a.Candidate.AgentID]
	lat := time.Duration(float64(ag.latency) * (0.8 + 0.4*s.rng.Float64()))
	s.clock.Advance(lat)
	s.spent += ag.cost
	if s.rng.Float64() < ag.fail {
		s.failures++
		c := ag.code
		if c == codes.OK {
			c = codes.Unavailable
		}
		return ag.started, status.Errorf(c, "agent %s failed", a.Candidate.AgentID)
	}
	return true, nil
}
