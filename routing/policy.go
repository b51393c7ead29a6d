package routing

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// PolicyName names a selection policy.
type PolicyName string

// The selection policies.
const (
	RoundRobin  PolicyName = "round_robin"
	LeastLoaded PolicyName = "least_loaded"
	Latency     PolicyName = "latency"
	Cost        PolicyName = "cost"
)

// PolicyNames lists every valid policy name.
var PolicyNames = []PolicyName{RoundRobin, LeastLoaded, Latency, Cost}

// Locality says how much agents on the caller's node are preferred.
type Locality int

// Locality preferences.
const (
	LocalityPrefer Locality = iota // same node first unless saturated
	LocalityNone                   // ignore placement
	LocalityOnly                   // same node only
)

// Proficiency levels, ordered; they mirror meshnodev1.Proficiency.
type Proficiency int

// Proficiency levels.
const (
	ProficiencyAny         Proficiency = 0
	ProficiencyNovice      Proficiency = 1
	ProficiencyExperienced Proficiency = 2
	ProficiencyExpert      Proficiency = 3
)

// Policy is a validated routing policy with every default filled in. Build it
// with PolicyFromProto or DefaultPolicy; Route uses it as given.
type Policy struct {
	Capability   string
	Name         PolicyName
	QualityTiers []float64 // strictly descending, all >= HardFloor
	HardFloor    float64
	MaxCost      float64 // +Inf: no limit
	Proficiency  ProficiencyRules
	Locality     Locality
	Breaker      BreakerConfig
	Retry        RetryConfig
	Deadline     DeadlineConfig
	MaxHops      int
	Fallback     string
}

// ProficiencyRules: see the proto message of the same name.
type ProficiencyRules struct {
	Levels         []ComplexityLevel // sorted by MinComplexity ascending
	ReserveExperts bool
	Saturation     float64
}

// ComplexityLevel is one threshold of ProficiencyRules.
type ComplexityLevel struct {
	MinComplexity  int
	MinProficiency Proficiency
}

// BreakerConfig: see CircuitBreakerSettings.
type BreakerConfig struct {
	Disabled            bool
	ConsecutiveFailures int
	FailureRate         float64
	Window              time.Duration
	MinRequests         int
	OpenDuration        time.Duration
	MaxOpenDuration     time.Duration
	OpenJitter          float64
	HalfOpenProbes      int
}

// RetryConfig: see RetrySettings.
type RetryConfig struct {
	MaxAttempts      int
	BackoffBase      time.Duration
	BackoffMax       time.Duration
	BudgetRatio      float64
	MinRetriesPerSec float64
	BudgetWindow     time.Duration
	RetryableCodes   []codes.Code
}

// DeadlineConfig: see DeadlineSettings.
type DeadlineConfig struct {
	HopReserve     time.Duration
	MinRemaining   time.Duration
	DefaultTimeout time.Duration
}

// Defaults, each with its reason.
const (
	// Linkerd's default balancer; adapts to slow and loaded agents untuned.
	DefaultPolicyName = Latency
	// Success rates below 70% mean the agent is broken, not unlucky.
	DefaultHardFloor = 0.70
	// Deep enough for orchestrator -> planner -> tool chains, shallow enough
	// that a runaway recursion dies within milliseconds.
	DefaultMaxHops = 8
	maxMaxHops     = 64
	maxComplexity  = 10
)

// DefaultQualityTiers prefer healthy agents (>= 95%) and fall back to merely
// good ones (>= 90%) before accepting anything above the hard floor.
var DefaultQualityTiers = []float64{0.95, 0.90}

// DefaultBreaker mirrors Linkerd's failure accrual (5 consecutive failures)
// plus Envoy-style rate ejection (50% over 10 s with at least 20 calls).
func DefaultBreaker() BreakerConfig {
	return BreakerConfig{
		ConsecutiveFailures: 5,
		FailureRate:         0.5,
		Window:              10 * time.Second,
		MinRequests:         20,
		OpenDuration:        5 * time.Second,
		MaxOpenDuration:     60 * time.Second,
		OpenJitter:          0.2,
		HalfOpenProbes:      1,
	}
}

// DefaultRetry mirrors Linkerd's retry budget (20% of calls plus 10/s over
// 10 s) with three attempts and 25 ms full-jitter backoff.
func DefaultRetry() RetryConfig {
	return RetryConfig{
		MaxAttempts:      3,
		BackoffBase:      25 * time.Millisecond,
		BackoffMax:       time.Second,
		BudgetRatio:      0.2,
		MinRetriesPerSec: 10,
		BudgetWindow:     10 * time.Second,
		RetryableCodes:   []codes.Code{codes.Unavailable},
	}
}

// DefaultDeadline keeps 5 ms per hop (enough to answer over a local QUIC
// stream) and refuses to start calls with less than 10 ms left.
func DefaultDeadline() DeadlineConfig {
	return DeadlineConfig{HopReserve: 5 * time.Millisecond, MinRemaining: 10 * time.Millisecond, DefaultTimeout: 30 * time.Second}
}

// DefaultProficiency: complexity 0-10; 4+ needs an experienced agent, 7+ an expert.
func DefaultProficiency() ProficiencyRules {
	return ProficiencyRules{
		Levels: []ComplexityLevel{
			{MinComplexity: 4, MinProficiency: ProficiencyExperienced},
			{MinComplexity: 7, MinProficiency: ProficiencyExpert},
		},
		ReserveExperts: true,
		Saturation:     0.8,
	}
}

// DefaultPolicy is the policy used when none is stored.
func DefaultPolicy() Policy {
	return Policy{
		Name:         DefaultPolicyName,
		QualityTiers: slices.Clone(DefaultQualityTiers),
		HardFloor:    DefaultHardFloor,
		MaxCost:      math.Inf(1),
		Proficiency:  DefaultProficiency(),
		Locality:     LocalityPrefer,
		Breaker:      DefaultBreaker(),
		Retry:        DefaultRetry(),
		Deadline:     DefaultDeadline(),
		MaxHops:      DefaultMaxHops,
	}
}

// IsDefaultKey reports whether a policy key means the cluster default.
func IsDefaultKey(capability string) bool { return capability == "" || capability == "*" }

// ParsePolicyName checks a policy name; "" means def.
func ParsePolicyName(s string, def PolicyName) (PolicyName, error) {
	if s == "" {
		return def, nil
	}
	n := PolicyName(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(PolicyNames, n) {
		return n, nil
	}
	return "", fmt.Errorf("unknown policy %q; use one of round_robin, least_loaded, latency, cost", s)
}

// FieldError names the policy field that is invalid and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks a policy as SetPolicy receives it. The error is a
// *FieldError naming the first invalid field; return it as InvalidArgument.
func Validate(p *meshnodev1.RoutingPolicy) error {
	_, err := PolicyFromProto(p)
	return err
}

// PolicyFromProto validates p and fills every unset field with its default.
// A nil p yields DefaultPolicy.
func PolicyFromProto(p *meshnodev1.RoutingPolicy) (Policy, error) {
	out := DefaultPolicy()
	if p == nil {
		return out, nil
	}
	out.Capability = p.GetCapability()
	if c := p.GetCapability(); c != "*" && (len(c) > 128 || strings.ContainsAny(c, " \t\n")) {
		return out, fieldErr("capability", "must be \"*\" or a capability name of at most 128 bytes without spaces")
	}
	var err error
	if out.Name, err = ParsePolicyName(p.GetPolicy(), DefaultPolicyName); err != nil {
		return out, fieldErr("policy", "%v", err)
	}
	if p.QualityHardFloor != nil {
		out.HardFloor = p.GetQualityHardFloor()
		if err := checkFraction("quality_hard_floor", out.HardFloor); err != nil {
			return out, err
		}
	}
	if len(p.GetQualityTiers()) > 0 {
		out.QualityTiers = slices.Clone(p.GetQualityTiers())
	}
	if err := checkTiers(out.QualityTiers, out.HardFloor, p.QualityHardFloor != nil || len(p.GetQualityTiers()) > 0); err != nil {
		return out, err
	}
	if p.MaxCost != nil {
		out.MaxCost = p.GetMaxCost()
		if out.MaxCost < 0 || math.IsNaN(out.MaxCost) {
			return out, fieldErr("max_cost", "must not be negative, got %v", out.MaxCost)
		}
	}
	if out.Proficiency, err = proficiencyFromProto(p.GetProficiency()); err != nil {
		return out, err
	}
	if out.Locality, err = localityFromProto("locality", p.GetLocality(), LocalityPrefer); err != nil {
		return out, err
	}
	if out.Breaker, err = breakerFromProto(p.GetCircuitBreaker()); err != nil {
		return out, err
	}
	if out.Retry, err = retryFromProto(p.GetRetry()); err != nil {
		return out, err
	}
	if out.Deadline, err = deadlineFromProto(p.GetDeadline()); err != nil {
		return out, err
	}
	if h := p.GetMaxHops(); h != 0 {
		if h > maxMaxHops {
			return out, fieldErr("max_hops", "must be 1-%d, got %d", maxMaxHops, h)
		}
		out.MaxHops = int(h)
	}
	out.Fallback = p.GetFallbackCapability()
	if out.Fallback != "" && (out.Fallback == out.Capability || out.Fallback == "*") {
		return out, fieldErr("fallback_capability", "must name another capability, got %q", out.Fallback)
	}
	return out, nil
}

func checkFraction(field string, v float64) error {
	if math.IsNaN(v) || v < 0 || v > 1 {
		return fieldErr(field, "must be a fraction between 0 and 1 (0.95 means 95%%), got %v", v)
	}
	return nil
}

func checkTiers(tiers []float64, floor float64, explicit bool) error {
	for i, t := range tiers {
		f := fmt.Sprintf("quality_tiers[%d]", i)
		if err := checkFraction(f, t); err != nil {
			return err
		}
		if i > 0 && t >= tiers[i-1] {
			return fieldErr(f, "tiers must be strictly descending, but %v follows %v", t, tiers[i-1])
		}
		if t < floor && explicit {
			return fieldErr(f, "tier %v is below quality_hard_floor %v, so it could never be used", t, floor)
		}
	}
	return nil
}

func proficiencyFromProto(p *meshnodev1.ProficiencyRules) (ProficiencyRules, error) {
	out := DefaultProficiency()
	if p == nil {
		return out, nil
	}
	if len(p.GetLevels()) > 0 {
		out.Levels = out.Levels[:0:0]
		for i, l := range p.GetLevels() {
			f := fmt.Sprintf("proficiency.levels[%d]", i)
			if l.GetMinComplexity() > maxComplexity {
				return out, fieldErr(f+".min_complexity", "must be 0-%d, got %d", maxComplexity, l.GetMinComplexity())
			}
			lv := l.GetMinProficiency()
			if lv < meshnodev1.Proficiency_PROFICIENCY_UNSPECIFIED || lv > meshnodev1.Proficiency_PROFICIENCY_EXPERT {
				return out, fieldErr(f+".min_proficiency", "unknown proficiency %d", lv)
			}
			out.Levels = append(out.Levels, ComplexityLevel{MinComplexity: int(l.GetMinComplexity()), MinProficiency: Proficiency(lv)})
		}
		slices.SortStableFunc(out.Levels, func(a, b ComplexityLevel) int { return a.MinComplexity - b.MinComplexity })
		for i := 1; i < len(out.Levels); i++ {
			if out.Levels[i].MinComplexity == out.Levels[i-1].MinComplexity {
				return out, fieldErr("proficiency.levels", "complexity %d appears twice", out.Levels[i].MinComplexity)
			}
			if out.Levels[i].MinProficiency < out.Levels[i-1].MinProficiency {
				return out, fieldErr("proficiency.levels", "harder work (complexity %d) cannot need less proficiency than easier work", out.Levels[i].MinComplexity)
			}
		}
	}
	if p.ReserveExperts != nil {
		out.ReserveExperts = p.GetReserveExperts()
	}
	if p.Saturation != nil {
		out.Saturation = p.GetSaturation()
		if math.IsNaN(out.Saturation) || out.Saturation <= 0 || out.Saturation > 1 {
			return out, fieldErr("proficiency.saturation", "must be in (0, 1], got %v", out.Saturation)
		}
	}
	return out, nil
}

func localityFromProto(field string, l meshnodev1.LocalityPreference, def Locality) (Locality, error) {
	switch l {
	case meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_UNSPECIFIED:
		return def, nil
	case meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_NONE:
		return LocalityNone, nil
	case meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_PREFER_LOCAL:
		return LocalityPrefer, nil
	case meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_LOCAL_ONLY:
		return LocalityOnly, nil
	}
	return def, fieldErr(field, "unknown locality preference %d", l)
}

// duration reads an optional Duration: nil keeps def; a set value must be
// valid and, when positive is true, greater than zero.
func duration(field string, d *durationpb.Duration, def time.Duration, positive bool) (time.Duration, error) {
	if d == nil {
		return def, nil
	}
	if err := d.CheckValid(); err != nil {
		return def, fieldErr(field, "%v", err)
	}
	v := d.AsDuration()
	if v < 0 || (positive && v == 0) {
		return def, fieldErr(field, "must be greater than zero, got %v", v)
	}
	return v, nil
}
