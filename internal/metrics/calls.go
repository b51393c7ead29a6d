package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/routing"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

var (
	_ dataplane.Observer = (*Calls)(nil)
	_ routing.Observer   = (*Calls)(nil)
)

// numCodes is how many gRPC codes there are (OK through Unauthenticated);
// an agent's out-of-range code is counted as Unknown.
const numCodes = int(codes.Unauthenticated) + 1

// maxCachedEdges bounds the cache of resolved series. Past it the cache is
// emptied and refilled: series stay in the registry, only their lookups
// are redone.
const maxCachedEdges = 1 << 15

// Calls records the data plane's and the router's events as Prometheus
// series. Safe for concurrent use.
type Calls struct {
	agents, caps *folder
	folded       *prometheus.CounterVec // shared with the quorum metrics' kind label

	calls, handled      *prometheus.CounterVec
	duration, handlerD  *prometheus.HistogramVec
	attempts, retries   *prometheus.CounterVec
	inflight            *prometheus.GaugeVec
	refusals            *prometheus.CounterVec
	breaker             *prometheus.GaugeVec
	breakerTransitions  *prometheus.CounterVec
	budgetExhausted     *prometheus.CounterVec
	decisions           *prometheus.CounterVec
	decided             map[routing.PolicyName][2]prometheus.Counter // read-only after newCalls: no lock on the hot path
	callerSide, handler edgeCache
	serving             gaugeCache
}

// edgeKey is a call's identity before folding: the cache is keyed by it so
// the hot path folds nothing and allocates nothing once a pair is known.
type edgeKey struct{ caller, callee, capability string }

// edgeSeries holds one edge's resolved series. The per-code counters are
// created on first use so an edge exports only the codes it has seen.
type edgeSeries struct {
	labels   [3]string // folded caller, callee, capability
	codes    [numCodes]atomic.Pointer[prometheus.Counter]
	duration prometheus.Observer
	attempts prometheus.Counter // caller side only
	retries  prometheus.Counter
}

type edgeCache struct {
	mu    sync.RWMutex
	edges map[edgeKey]*edgeSeries
}

type gaugeCache struct {
	mu     sync.RWMutex
	gauges map[string]prometheus.Gauge
}

// Latency buckets of the classic histograms, in seconds: 1 ms to 60 s, the
// range agent calls live in. Native histograms beside them resolve finer.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func histogramOpts(name, help string) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Name: name, Help: help, Buckets: latencyBuckets,
		// Native histograms: ~10% bucket width, bounded and reset hourly so
		// a long-lived node's series stays small.
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}
}

func newCalls(reg prometheus.Registerer, maxAgents int) *Calls {
	folded := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_metrics_folded_total",
		Help: "Distinct label values folded under \"other\" because the per-node limit (metrics_max_agents) was reached, by label."}, []string{"label"})
	pair := []string{"caller_agent", "callee_agent", "capability"}
	c := &Calls{
		folded: folded,
		agents: newFolder(maxAgents, folded.WithLabelValues("agent")),
		caps:   newFolder(maxAgents, folded.WithLabelValues("capability")),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_calls_total",
			Help: "Calls made from this node's socket, by caller agent, callee agent (the last one tried), capability and outcome code."}, append(pair, "code")),
		duration: prometheus.NewHistogramVec(histogramOpts("meshnode_call_duration_seconds",
			"End-to-end latency of calls made from this node (all attempts), by caller agent, callee agent and capability."), pair),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_handled_calls_total",
			Help: "Call attempts handled by this node's agents, by caller agent, callee agent, capability and outcome code."}, append(pair, "code")),
		// Per callee, not per pair: the handler's time does not depend on
		// who called, and a histogram per pair on both sides doubled the
		// scrape for no question it answers.
		handlerD: prometheus.NewHistogramVec(histogramOpts("meshnode_handler_duration_seconds",
			"Time this node's agents took to answer a call attempt, by callee agent and capability."), []string{"callee_agent", "capability"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_call_attempts_total",
			Help: "Attempts made for calls from this node, by capability."}, []string{"capability"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_call_retries_total",
			Help: "Attempts after the first (retries) for calls from this node, by capability."}, []string{"capability"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshnode_agent_calls_in_flight",
			Help: "Calls a local agent is handling now."}, []string{"agent"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_routing_refusals_total",
			Help: "Forwarded calls refused by this node's inbound checks before any agent saw them, by reason."}, []string{"reason"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshnode_routing_breaker_state",
			Help: "Circuit breaker state of an agent for a capability as this node's router last saw it: 0 closed, 1 open, 2 half-open."}, []string{"agent", "capability"}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_routing_breaker_transitions_total",
			Help: "Circuit breaker state changes, by agent, capability and the state entered."}, []string{"agent", "capability", "state"}),
		budgetExhausted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_routing_retry_budget_exhausted_total",
			Help: "Retries refused because the capability's retry budget was spent, by capability."}, []string{"capability"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_routing_decisions_total",
			Help: "Agent selections the router made for attempts, by policy, and whether it found an agent (picked) or none (no_agent)."}, []string{"policy", "result"}),
	}
	c.decided = map[routing.PolicyName][2]prometheus.Counter{}
	for _, p := range routing.PolicyNames {
		c.decided[p] = [2]prometheus.Counter{c.decisions.WithLabelValues(string(p), "no_agent"), c.decisions.WithLabelValues(string(p), "picked")}
	}
	c.callerSide.edges = map[edgeKey]*edgeSeries{}
	c.handler.edges = map[edgeKey]*edgeSeries{}
	c.serving.gauges = map[string]prometheus.Gauge{}
	// Every refusal reason exists from the start, so rate() sees the first one.
	for _, r := range []dataplane.Refusal{dataplane.RefusedCycle, dataplane.RefusedHopLimit, dataplane.RefusedDeadline, dataplane.RefusedBadMetadata, dataplane.RefusedCallerIdentity, dataplane.RefusedAuthz, dataplane.RefusedOther} {
		c.refusals.WithLabelValues(string(r))
	}
	reg.MustRegister(folded, c.calls, c.duration, c.handled, c.handlerD, c.attempts, c.retries, c.inflight, c.refusals,
		c.breaker, c.breakerTransitions, c.budgetExhausted, c.decisions)
	return c
}

// series returns the cached series of an edge, resolving them on first use.
func (c *Calls) series(cache *edgeCache, e *dataplane.CallEvent, callerSide bool) *edgeSeries {
	k := edgeKey{e.Caller, e.Callee, e.Capability}
	cache.mu.RLock()
	s := cache.edges[k]
	cache.mu.RUnlock()
	if s != nil {
		return s
	}
	s = &edgeSeries{labels: [3]string{c.agents.label(e.Caller), c.agents.label(e.Callee), c.caps.label(e.Capability)}}
	if callerSide {
		s.duration = c.duration.WithLabelValues(s.labels[:]...)
		s.attempts = c.attempts.WithLabelValues(s.labels[2])
		s.retries = c.retries.WithLabelValues(s.labels[2])
	} else {
		s.duration = c.handlerD.WithLabelValues(s.labels[1], s.labels[2])
	}
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if old := cache.edges[k]; old != nil {
		return old
	}
	if len(cache.edges) >= maxCachedEdges {
		clear(cache.edges)
	}
	cache.edges[k] = s
	return s
}

// counter returns the edge's counter for code, creating it on first use.
func (s *edgeSeries) counter(vec *prometheus.CounterVec, code codes.Code) prometheus.Counter {
	if int(code) >= numCodes {
		code = codes.Unknown
	}
	if p := s.codes[code].Load(); p != nil {
		return *p
	}
	ctr := vec.WithLabelValues(s.labels[0], s.labels[1], s.labels[2], code.String())
	s.codes[code].CompareAndSwap(nil, &ctr)
	return ctr
}

// CallMade records a call made from this node's socket.
func (c *Calls) CallMade(e dataplane.CallEvent) {
	s := c.series(&c.callerSide, &e, true)
	s.counter(c.calls, e.Code).Inc()
	s.duration.Observe(e.Latency.Seconds())
	if e.Attempts > 0 {
		s.attempts.Add(float64(e.Attempts))
		if e.Attempts > 1 {
			s.retries.Add(float64(e.Attempts - 1))
		}
	}
}

// CallServed records one attempt a local agent handled.
func (c *Calls) CallServed(e dataplane.CallEvent) {
	s := c.series(&c.handler, &e, false)
	s.counter(c.handled, e.Code).Inc()
	s.duration.Observe(e.Latency.Seconds())
}

// Serving moves a local agent's in-flight gauge.
func (c *Calls) Serving(agentID string, delta int) {
	c.serving.mu.RLock()
	g := c.serving.gauges[agentID]
	c.serving.mu.RUnlock()
	if g == nil {
		g = c.inflight.WithLabelValues(c.agents.label(agentID))
		c.serving.mu.Lock()
		if len(c.serving.gauges) >= maxCachedEdges {
			clear(c.serving.gauges)
		}
		c.serving.gauges[agentID] = g
		c.serving.mu.Unlock()
	}
	g.Add(float64(delta))
}

// Refused counts a forwarded call the inbound checks refused.
func (c *Calls) Refused(r dataplane.Refusal) { c.refusals.WithLabelValues(string(r)).Inc() }

// BreakerChanged records a breaker transition. Called under the router's
// lock: label lookups only.
func (c *Calls) BreakerChanged(agent, capability string, _, to routing.BreakerState) {
	a, cp := c.agents.label(agent), c.caps.label(capability)
	c.breaker.WithLabelValues(a, cp).Set(float64(to))
	c.breakerTransitions.WithLabelValues(a, cp, to.String()).Inc()
}

// RetryBudgetExhausted counts a retry the budget refused.
func (c *Calls) RetryBudgetExhausted(capability string) {
	c.budgetExhausted.WithLabelValues(c.caps.label(capability)).Inc()
}

// Decided counts one of the router's selections. Policy names are the
// router's own few, resolved once.
func (c *Calls) Decided(policy routing.PolicyName, picked bool) {
	i := 0
	if picked {
		i = 1
	}
	if ctrs, ok := c.decided[policy]; ok {
		ctrs[i].Inc()
		return
	}
	c.decisions.WithLabelValues(string(policy), [...]string{"no_agent", "picked"}[i]).Inc()
}
