package routing

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// view is one eligible candidate with its merged measurements.
type view struct {
	c        *Candidate
	ep       *endpoint
	rate     float64 // merged success rate
	latency  float64 // merged latency estimate, ns
	inFlight int     // merged in-flight
	load     float64 // in flight / capacity; 0 when capacity is unlimited
	probe    bool    // half-open breaker: this call would be a probe
}

// exclusions counts why candidates were left out, for the error message.
type exclusions struct {
	offering, matching                                   int
	constraint, proficiency, cost, remote, onChain       int
	nodeDown, notReady, draining, open, belowFloor, busy int
	cycleAgent                                           string
	cheapest                                             float64
}

// selection is the state of one pick; built under Router.mu.
type selection struct {
	now      time.Time
	req      *Request
	pol      *Policy
	name     PolicyName
	need     Proficiency
	maxCost  float64
	locality Locality
}

func newSelection(now time.Time, req *Request, pol *Policy) selection {
	s := selection{now: now, req: req, pol: pol, name: pol.Name, maxCost: pol.MaxCost, locality: pol.Locality}
	o := &req.Overrides
	if o.Policy != "" {
		s.name = o.Policy
	}
	if o.HasMaxCost {
		s.maxCost = min(s.maxCost, o.MaxCost)
	}
	if o.Locality != nil {
		s.locality = *o.Locality
	}
	s.need = pol.Proficiency.required(o.Complexity, o.MinProficiency)
	return s
}

// filter returns the candidates that may take the call now: offering the
// capability, matching constraints, proficiency and cost, not on the chain,
// alive, ready, not draining, breaker admitting, above the hard quality
// floor, not at capacity.
func (r *Router) filter(s *selection, cands []Candidate, out []view) ([]view, exclusions) {
	ex := exclusions{cheapest: math.Inf(1)}
	for i := range cands {
		c := &cands[i]
		if c.Capability.Name != s.req.Capability {
			continue
		}
		ex.offering++
		if !matchAll(s.req.Constraints, c.Capability.Attributes) || !matchAll(s.req.Overrides.Constraints, c.Capability.Attributes) {
			ex.constraint++
			continue
		}
		if c.Capability.Proficiency < s.need {
			ex.proficiency++
			continue
		}
		ex.cheapest = min(ex.cheapest, c.Capability.Cost)
		if c.Capability.Cost > s.maxCost {
			ex.cost++
			continue
		}
		if s.locality == LocalityOnly && c.Node != r.cfg.LocalNode {
			ex.remote++
			continue
		}
		if slices.Contains(s.req.Meta.Chain, c.AgentID) {
			ex.onChain++
			ex.cycleAgent = c.AgentID
			continue
		}
		ex.matching++
		switch {
		case !c.NodeAlive:
			ex.nodeDown++
			continue
		case c.Draining:
			ex.draining++
			continue
		case !c.Ready:
			ex.notReady++
			continue
		}
		ep := r.endpointFor(c.AgentID, s.req.Capability, s.now)
		stored := ep.brk.state
		ok, probe := ep.brk.admits(s.now, s.pol.Breaker)
		if ep.brk.state != stored { // the open time ended: half-open now
			r.cfg.Observer.BreakerChanged(ep.key.agent, ep.key.capability, stored, ep.brk.state)
		}
		if !ok {
			ex.open++
			continue
		}
		v := view{c: c, ep: ep, probe: probe}
		v.rate = ep.successRate(s.now, c, r.tune)
		// A probe is how a tripped agent earns its way back; the floor
		// would otherwise keep it out forever.
		if v.rate < s.pol.HardFloor && !probe {
			ex.belowFloor++
			continue
		}
		v.inFlight = ep.inFlightMerged(c)
		if capy := c.capacity(); capy > 0 {
			if v.inFlight >= capy {
				ex.busy++
				continue
			}
			v.load = float64(v.inFlight) / float64(capy)
		}
		v.latency = ep.latency(s.now, c, r.tune)
		out = append(out, v)
	}
	return out, ex
}

func matchAll(cs []Constraint, attrs map[string]string) bool {
	for _, c := range cs {
		if !c.Match(attrs) {
			return false
		}
	}
	return true
}

// narrow keeps the views satisfying keep, unless none does (a preference,
// not a filter).
func narrow(vs []view, keep func(*view) bool) []view {
	n := 0
	for i := range vs {
		if keep(&vs[i]) {
			n++
		}
	}
	if n == 0 || n == len(vs) {
		return vs
	}
	out := make([]view, 0, n)
	for i := range vs {
		if keep(&vs[i]) {
			out = append(out, vs[i])
		}
	}
	return out
}

// compose applies the preferences in order: a probe due, agents not yet
// tried by this call, caller-named agents, the best quality tier, experts
// kept for expert work, locality; then the policy scores what is left.
func (r *Router) compose(s *selection, vs []view, tried []string) *view {
	if p := narrow(vs, func(v *view) bool { return v.probe }); p[0].probe {
		return &p[r.rng.IntN(len(p))]
	}
	vs = narrow(vs, func(v *view) bool { return !slices.Contains(tried, v.c.AgentID) })
	if pref := s.req.Overrides.PreferredAgents; len(pref) > 0 {
		vs = narrow(vs, func(v *view) bool { return slices.Contains(pref, v.c.AgentID) })
	}
	for _, floor := range s.pol.QualityTiers {
		if t := narrow(vs, func(v *view) bool { return v.rate >= floor }); t[0].rate >= floor {
			vs = t
			break
		}
	}
	sat := s.pol.Proficiency.Saturation
	if s.pol.Proficiency.ReserveExperts && s.need < ProficiencyExpert {
		vs = narrow(vs, func(v *view) bool { return v.c.Capability.Proficiency < ProficiencyExpert && v.load < sat })
	}
	if s.locality == LocalityPrefer && r.cfg.LocalNode != "" {
		vs = narrow(vs, func(v *view) bool { return v.c.Node == r.cfg.LocalNode && v.load < sat })
	}
	return r.score(s, vs)
}

func (r *Router) score(s *selection, vs []view) *view {
	if len(vs) == 1 {
		return &vs[0]
	}
	switch s.name {
	case RoundRobin:
		slices.SortFunc(vs, func(a, b view) int { return strings.Compare(a.c.AgentID, b.c.AgentID) })
		n := r.rr[s.req.Capability]
		r.rr[s.req.Capability] = n + 1
		return &vs[n%uint64(len(vs))]
	case LeastLoaded:
		return r.p2c(vs, func(v *view) float64 { return float64(v.inFlight+1) / float64(capOrDefault(v.c)) })
	case Cost:
		return r.cheapest(vs)
	default:
		return r.fastest(vs)
	}
}

const defaultCapacity = 100

func capOrDefault(c *Candidate) int {
	if n := c.capacity(); n > 0 {
		return n
	}
	return defaultCapacity
}

func latencyCost(v *view) float64 { return v.latency * float64(v.inFlight+1) }

// fastest is Linkerd's peak-EWMA power of two choices, sampled from the
// agents whose cost is within OutlierFactor of the best: plain P2C still
// sends a slow agent the calls where both samples are slow, which with a
// third of the agents 10x slower is one call in nine. As the best agents
// load up, their cost rises and the pool widens again.
func (r *Router) fastest(vs []view) *view {
	best := math.Inf(1)
	for i := range vs {
		best = min(best, latencyCost(&vs[i]))
	}
	vs = narrow(vs, func(v *view) bool { return latencyCost(v) <= best*r.cfg.OutlierFactor })
	return r.p2c(vs, latencyCost)
}

// cheapest picks the lowest cost; equal costs are decided by peak-EWMA P2C
// so equally cheap agents share the load.
func (r *Router) cheapest(vs []view) *view {
	low := math.Inf(1)
	for i := range vs {
		low = min(low, vs[i].c.Capability.Cost)
	}
	vs = narrow(vs, func(v *view) bool { return v.c.Capability.Cost <= low })
	return r.p2c(vs, latencyCost)
}

func (r *Router) p2c(vs []view, cost func(*view) float64) *view {
	if len(vs) == 1 {
		return &vs[0]
	}
	i := r.rng.IntN(len(vs))
	j := r.rng.IntN(len(vs) - 1)
	if j >= i {
		j++
	}
	if cost(&vs[j]) < cost(&vs[i]) {
		return &vs[j]
	}
	return &vs[i]
}

// noCandidateError explains why nothing could be picked.
func noCandidateError(s *selection, ex exclusions) error {
	capName := s.req.Capability
	if ex.offering == 0 {
		return newStatus(codes.NotFound, ErrNoCapability,
			"no agent offers capability %q; check the name or register an agent for it", capName)
	}
	if ex.matching == 0 {
		if ex.onChain > 0 {
			return cycleError(s.req.Meta.Chain, ex.cycleAgent)
		}
		var why []string
		if ex.constraint > 0 {
			why = append(why, fmt.Sprintf("%d fail the constraints %v", ex.constraint, describe(s.req)))
		}
		if ex.proficiency > 0 {
			why = append(why, fmt.Sprintf("%d below proficiency %d", ex.proficiency, s.need))
		}
		if ex.cost > 0 {
			why = append(why, fmt.Sprintf("%d above max cost %v (cheapest %v)", ex.cost, s.maxCost, ex.cheapest))
		}
		if ex.remote > 0 {
			why = append(why, fmt.Sprintf("%d on other nodes (locality local-only)", ex.remote))
		}
		if ex.onChain > 0 {
			why = append(why, fmt.Sprintf("%d already on the call chain", ex.onChain))
		}
		return newStatus(codes.NotFound, ErrNoCapability,
			"no agent offering %q matches the request: %s; relax the request or register a matching agent", capName, strings.Join(why, ", "))
	}
	dyn := ex.nodeDown + ex.notReady + ex.draining + ex.open + ex.belowFloor + ex.busy
	sentinel := ErrNoneAvailable
	hint := "retry later"
	switch {
	case ex.open == dyn:
		sentinel, hint = ErrAllCircuitsOpen, "breakers close after their open time; set fallback_capability to route elsewhere meanwhile"
	case ex.open+ex.belowFloor == dyn:
		sentinel, hint = ErrBelowQualityFloor, "the agents are failing; check them, or set fallback_capability"
	case ex.busy == dyn:
		hint = "all agents are at capacity; retry later or add agents"
	}
	return newStatus(codes.Unavailable, sentinel,
		"no agent can take a call to %q now: %d circuit-open, %d below quality floor %v, %d at capacity, %d draining, %d not ready, %d on dead nodes; %s",
		capName, ex.open, ex.belowFloor, s.pol.HardFloor, ex.busy, ex.draining, ex.notReady, ex.nodeDown, hint)
}

func describe(req *Request) []string {
	var out []string
	for _, c := range req.Constraints {
		out = append(out, c.String())
	}
	for _, c := range req.Overrides.Constraints {
		out = append(out, c.String())
	}
	return out
}
