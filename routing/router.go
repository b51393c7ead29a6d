package routing

import (
	"context"
	"fmt"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/agentmesh/meshnode/internal/clock"
)

// Config configures a Router. Zero values mean the defaults in DefaultConfig.
type Config struct {
	// Clock is the time source, and retry backoff waits on it (a fake
	// clock advances instead of blocking); default clock.System. Tests and
	// the routing benchmarks inject a fake so that breaker timeouts, decay
	// and budgets run in simulated time.
	Clock clock.Clock
	// Rand drives P2C sampling, backoff jitter and breaker jitter; default
	// randomly seeded. Seed it in tests. The Router serialises its use.
	Rand *rand.Rand
	// Logger; default discards.
	Logger *slog.Logger
	// Tracer for the route and attempt spans; default a no-op tracer.
	Tracer trace.Tracer
	// LocalNode is this node's name, for locality preference.
	LocalNode string
	// Resolver finds a fallback capability's candidates and policy; without
	// it fallback_capability is ignored and the call fails fast.
	Resolver Resolver
	// LatencyDecay is the peak-EWMA time constant; default 10s (Linkerd's).
	LatencyDecay time.Duration
	// SuccessHalfLife is the half-life of the router's success counts; default 30s.
	SuccessHalfLife time.Duration
	// Freshness: own latency samples younger than this beat gossip; default 30s.
	Freshness time.Duration
	// DefaultRTT is assumed for an agent nobody has measured; default 30ms
	// (Linkerd's default RTT), low enough that new agents get tried.
	DefaultRTT time.Duration
	// SuccessPrior is how many observations the gossiped success rate is
	// worth against the router's own; default 10.
	SuccessPrior float64
	// OutlierFactor: the latency policy samples only agents whose cost is
	// within this factor of the best; default 3.
	OutlierFactor float64
	// IdleExpiry: measurements of an agent that has not been a candidate for
	// this long are dropped; default 10m.
	IdleExpiry time.Duration
	// Observer is told of breaker transitions and exhausted retry budgets
	// (metrics); default none.
	Observer Observer
}

// Observer hears what the router decides. Its methods run under the
// router's lock, so they must be cheap and must never call the router.
type Observer interface {
	// BreakerChanged: agent's breaker for capability moved from one state to another.
	BreakerChanged(agent, capability string, from, to BreakerState)
	// RetryBudgetExhausted: a retry of a call to capability was refused by its budget.
	RetryBudgetExhausted(capability string)
	// Decided: the router chose an agent for an attempt under policy
	// (picked), or found none it could use (picked false).
	Decided(policy PolicyName, picked bool)
}

type noObserver struct{}

func (noObserver) BreakerChanged(string, string, BreakerState, BreakerState) {}
func (noObserver) RetryBudgetExhausted(string)                               {}
func (noObserver) Decided(PolicyName, bool)                                  {}

// DefaultConfig returns the defaults, each explained on its field.
func DefaultConfig() Config {
	return Config{
		Clock:           clock.System{},
		LatencyDecay:    10 * time.Second,
		SuccessHalfLife: 30 * time.Second,
		Freshness:       30 * time.Second,
		DefaultRTT:      30 * time.Millisecond,
		SuccessPrior:    10,
		OutlierFactor:   3,
		IdleExpiry:      10 * time.Minute,
	}
}

// Validate checks the configuration; zero values are allowed (defaults).
func (c Config) Validate() error {
	switch {
	case c.LatencyDecay < 0:
		return fieldErr("LatencyDecay", "must not be negative")
	case c.SuccessHalfLife < 0:
		return fieldErr("SuccessHalfLife", "must not be negative")
	case c.Freshness < 0:
		return fieldErr("Freshness", "must not be negative")
	case c.DefaultRTT < 0:
		return fieldErr("DefaultRTT", "must not be negative")
	case c.SuccessPrior < 0:
		return fieldErr("SuccessPrior", "must not be negative")
	case c.OutlierFactor != 0 && c.OutlierFactor < 1:
		return fieldErr("OutlierFactor", "must be at least 1, got %v", c.OutlierFactor)
	case c.IdleExpiry < 0:
		return fieldErr("IdleExpiry", "must not be negative")
	}
	return nil
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider().Tracer("meshnode/routing")
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.LatencyDecay, d.LatencyDecay)
	setDur(&c.SuccessHalfLife, d.SuccessHalfLife)
	setDur(&c.Freshness, d.Freshness)
	setDur(&c.DefaultRTT, d.DefaultRTT)
	setDur(&c.IdleExpiry, d.IdleExpiry)
	if c.SuccessPrior == 0 {
		c.SuccessPrior = d.SuccessPrior
	}
	if c.OutlierFactor == 0 {
		c.OutlierFactor = d.OutlierFactor
	}
}

// Resolver gives the router a fallback capability's candidates and policy.
type Resolver interface {
	Resolve(ctx context.Context, capability string) ([]Candidate, Policy, error)
}

// Request is one call to route.
type Request struct {
	Capability  string
	Constraints []Constraint
	Overrides   Overrides
	Meta        Metadata
	// Policy in force for the capability; the zero Policy means DefaultPolicy().
	Policy Policy
}

// Attempt is one try of a call on one agent.
type Attempt struct {
	Candidate Candidate
	Number    int       // from 1
	Deadline  time.Time // the callee's deadline: the call's minus this hop's reserve
	// Meta is the metadata to send with the attempt: the chain with the
	// callee appended, hops+1, Deadline, Number and the trace context of
	// the attempt span.
	Meta Metadata
}

// Invoker performs one attempt and returns the callee's answer. started is
// true once the callee's handler may have begun (the request was delivered
// to the agent); err is a gRPC status error (MarkRetryable for
// agent-flagged retryable failures). Invoke must honour ctx, which carries
// the attempt's deadline and span. Everything the attempt sends (chain,
// hops, deadline, attempt number, trace context) is in the Attempt: the
// invoker derives none of it again.
type Invoker interface {
	Invoke(ctx context.Context, a Attempt) (answer *meshnodev1.CallResult, started bool, err error)
}

// AnswerFunc adapts a function to Invoker.
type AnswerFunc func(ctx context.Context, a Attempt) (*meshnodev1.CallResult, bool, error)

// Invoke calls f.
func (f AnswerFunc) Invoke(ctx context.Context, a Attempt) (*meshnodev1.CallResult, bool, error) {
	return f(ctx, a)
}

// InvokerFunc adapts a function whose attempts answer nothing (an empty
// CallResult) to Invoker.
type InvokerFunc func(ctx context.Context, a Attempt) (bool, error)

// Invoke calls f.
func (f InvokerFunc) Invoke(ctx context.Context, a Attempt) (*meshnodev1.CallResult, bool, error) {
	started, err := f(ctx, a)
	return nil, started, err
}

// Result describes a routed call that succeeded.
type Result struct {
	Answer     *meshnodev1.CallResult // the answering attempt's, as its invoker returned it
	Agent      Candidate
	Capability string   // the capability served: the one asked for, or its fallback
	Attempts   int      // attempts made, 1 when the first succeeded
	Tried      []string // agent per attempt, in order
	TraceID    string   // hex; empty when tracing is off
}

// Router picks agents, runs attempts, and keeps per-agent measurements,
// breakers and per-capability retry budgets. Safe for concurrent use. It
// starts no goroutines and holds no resources, so it has no Close.
type Router struct {
	cfg  Config
	tune statsTuning

	mu        sync.Mutex
	rng       *rand.Rand
	endpoints map[epKey]*endpoint
	budgets   map[string]*budget
	rr        map[string]uint64
	picks     uint64
	scratch   []view // reused by pick under mu; nothing keeps it past the lock
}

// NewRouter validates cfg, fills defaults and returns a Router.
func NewRouter(cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("routing config: %w", err)
	}
	cfg.fill()
	return &Router{
		cfg: cfg,
		tune: statsTuning{decay: cfg.LatencyDecay, halfLife: cfg.SuccessHalfLife, fresh: cfg.Freshness,
			defaultRTT: cfg.DefaultRTT, prior: cfg.SuccessPrior},
		rng:       cfg.Rand,
		endpoints: map[epKey]*endpoint{},
		budgets:   map[string]*budget{},
		rr:        map[string]uint64{},
	}, nil
}

func (r *Router) endpointFor(agent, capability string, now time.Time) *endpoint {
	k := epKey{agent, capability}
	ep := r.endpoints[k]
	if ep == nil {
		ep = &endpoint{key: k}
		r.endpoints[k] = ep
	}
	ep.lastUsed = now
	return ep
}

// prune drops idle measurements so departed agents do not pile up.
func (r *Router) prune(now time.Time) {
	for k, ep := range r.endpoints {
		if ep.inFlight == 0 && now.Sub(ep.lastUsed) > r.cfg.IdleExpiry && ep.brk.current(now) == BreakerClosed {
			delete(r.endpoints, k)
		}
	}
}

// Stats reports the router's view of one agent for one capability.
func (r *Router) Stats(agentID, capability string, c Candidate) (EndpointStats, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.endpoints[epKey{agentID, capability}]
	if !ok {
		return EndpointStats{}, false
	}
	now := r.cfg.Clock.Now()
	return EndpointStats{
		AgentID: agentID, Capability: capability,
		Latency:     time.Duration(ep.latency(now, &c, r.tune)),
		SuccessRate: ep.successRate(now, &c, r.tune),
		InFlight:    ep.inFlight,
		Breaker:     ep.brk.current(now),
	}, true
}

// pick selects an agent and registers the attempt on its endpoint.
func (r *Router) pick(now time.Time, req *Request, pol *Policy, cands []Candidate, tried []string) (Candidate, *endpoint, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.picks++; r.picks%4096 == 0 {
		r.prune(now)
	}
	s := newSelection(now, req, pol)
	vs, ex := r.filter(&s, cands, r.scratch[:0])
	r.scratch = vs[:0]
	if len(vs) == 0 {
		return Candidate{}, nil, false, noCandidateError(&s, ex)
	}
	v := r.compose(&s, vs, tried)
	v.ep.inFlight++
	v.ep.brk.start(v.probe)
	return *v.c, v.ep, v.probe, nil
}

// finish records an attempt's outcome.
func (r *Router) finish(ep *endpoint, pol *Policy, probe bool, start, end time.Time, o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep.inFlight--
	ep.lastUsed = end
	switch o {
	case outcomeAbandoned:
		ep.brk.abandon(probe)
		return
	case outcomeSuccess:
		ep.observeRTT(end, end.Sub(start), r.tune)
	case outcomeTimeout:
		ep.observeRTT(end, end.Sub(start), r.tune) // a timeout is at least this slow
	}
	failed := o == outcomeFailure || o == outcomeTimeout
	if o != outcomeNeutral {
		ep.observeOutcome(end, failed, r.tune)
	}
	// The breaker moves from open to half-open lazily, when next read
	// (usually by the selection, which reports it): name it here too when
	// this read is the first.
	stored := ep.brk.state
	before := ep.brk.current(end)
	if stored != before {
		r.cfg.Observer.BreakerChanged(ep.key.agent, ep.key.capability, stored, before)
	}
	ep.brk.record(end, pol.Breaker, failed && o != outcomeNeutral, probe, r.rng)
	if after := ep.brk.current(end); after != before {
		r.cfg.Observer.BreakerChanged(ep.key.agent, ep.key.capability, before, after)
	}
}

func (r *Router) budgetFor(capability string) *budget {
	b := r.budgets[capability]
	if b == nil {
		b = &budget{}
		r.budgets[capability] = b
	}
	return b
}

func (r *Router) recordCall(now time.Time, capability string, cfg RetryConfig) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.budgetFor(capability).recordCall(now, cfg)
}

// RetryBudgets reports, per capability called recently, how many retries
// its budget would allow now. For metrics: it takes the router's lock once.
func (r *Router) RetryBudgets() map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Clock.Now()
	out := make(map[string]float64, len(r.budgets))
	for c, b := range r.budgets {
		out[c] = b.left(now)
	}
	return out
}

func (r *Router) tryRetry(now time.Time, capability string, cfg RetryConfig) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := r.budgetFor(capability).tryRetry(now, cfg)
	if !ok {
		r.cfg.Observer.RetryBudgetExhausted(capability)
	}
	return ok
}

// backoff is full jitter: uniform in [0, min(max, base*2^(retry-1))).
func (r *Router) backoff(retry int, cfg RetryConfig) time.Duration {
	ceil := cfg.BackoffBase
	for i := 1; i < retry && ceil < cfg.BackoffMax; i++ {
		ceil *= 2
	}
	ceil = min(ceil, cfg.BackoffMax)
	if ceil <= 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.rng.Int64N(int64(ceil)))
}
