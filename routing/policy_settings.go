package routing

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

const maxAttemptsLimit = 10

func breakerFromProto(p *meshnodev1.CircuitBreakerSettings) (BreakerConfig, error) {
	out := DefaultBreaker()
	if p == nil {
		return out, nil
	}
	const f = "circuit_breaker."
	out.Disabled = p.GetDisabled()
	if v := p.GetConsecutiveFailures(); v != 0 {
		out.ConsecutiveFailures = int(v)
	}
	if p.FailureRateThreshold != nil {
		out.FailureRate = p.GetFailureRateThreshold()
		if math.IsNaN(out.FailureRate) || out.FailureRate <= 0 || out.FailureRate > 1 {
			return out, fieldErr(f+"failure_rate_threshold", "must be in (0, 1], got %v", out.FailureRate)
		}
	}
	var err error
	if out.Window, err = duration(f+"window", p.GetWindow(), out.Window, true); err != nil {
		return out, err
	}
	if v := p.GetMinRequests(); v != 0 {
		out.MinRequests = int(v)
	}
	if out.OpenDuration, err = duration(f+"open_duration", p.GetOpenDuration(), out.OpenDuration, true); err != nil {
		return out, err
	}
	if out.MaxOpenDuration, err = duration(f+"max_open_duration", p.GetMaxOpenDuration(), out.MaxOpenDuration, true); err != nil {
		return out, err
	}
	if p.GetMaxOpenDuration() == nil && out.MaxOpenDuration < out.OpenDuration {
		out.MaxOpenDuration = out.OpenDuration
	}
	if out.MaxOpenDuration < out.OpenDuration {
		return out, fieldErr(f+"max_open_duration", "%v is shorter than open_duration %v", out.MaxOpenDuration, out.OpenDuration)
	}
	if p.OpenJitter != nil {
		out.OpenJitter = p.GetOpenJitter()
		if math.IsNaN(out.OpenJitter) || out.OpenJitter < 0 || out.OpenJitter >= 1 {
			return out, fieldErr(f+"open_jitter", "must be in [0, 1), got %v", out.OpenJitter)
		}
	}
	if v := p.GetHalfOpenProbes(); v != 0 {
		if v > 100 {
			return out, fieldErr(f+"half_open_probes", "must be 1-100, got %d", v)
		}
		out.HalfOpenProbes = int(v)
	}
	return out, nil
}

func retryFromProto(p *meshnodev1.RetrySettings) (RetryConfig, error) {
	out := DefaultRetry()
	if p == nil {
		return out, nil
	}
	const f = "retry."
	if v := p.GetMaxAttempts(); v != 0 {
		if v > maxAttemptsLimit {
			return out, fieldErr(f+"max_attempts", "must be 1-%d, got %d", maxAttemptsLimit, v)
		}
		out.MaxAttempts = int(v)
	}
	var err error
	if out.BackoffBase, err = duration(f+"backoff_base", p.GetBackoffBase(), out.BackoffBase, false); err != nil {
		return out, err
	}
	if out.BackoffMax, err = duration(f+"backoff_max", p.GetBackoffMax(), out.BackoffMax, false); err != nil {
		return out, err
	}
	if p.GetBackoffMax() == nil && out.BackoffMax < out.BackoffBase {
		out.BackoffMax = out.BackoffBase
	}
	if out.BackoffMax < out.BackoffBase {
		return out, fieldErr(f+"backoff_max", "%v is shorter than backoff_base %v", out.BackoffMax, out.BackoffBase)
	}
	if p.BudgetRatio != nil {
		out.BudgetRatio = p.GetBudgetRatio()
		if err := checkFraction(f+"budget_ratio", out.BudgetRatio); err != nil {
			return out, err
		}
	}
	if p.MinRetriesPerSecond != nil {
		out.MinRetriesPerSec = p.GetMinRetriesPerSecond()
		if math.IsNaN(out.MinRetriesPerSec) || out.MinRetriesPerSec < 0 || out.MinRetriesPerSec > 1e6 {
			return out, fieldErr(f+"min_retries_per_second", "must be 0-1000000, got %v", out.MinRetriesPerSec)
		}
	}
	if out.BudgetWindow, err = duration(f+"budget_window", p.GetBudgetWindow(), out.BudgetWindow, true); err != nil {
		return out, err
	}
	if len(p.GetRetryableCodes()) > 0 {
		out.RetryableCodes = nil
		for i, name := range p.GetRetryableCodes() {
			c, ok := parseCode(name)
			if !ok || c == codes.OK {
				return out, fieldErr(fmt.Sprintf("%sretryable_codes[%d]", f, i), "unknown gRPC code %q; use a name such as UNAVAILABLE", name)
			}
			out.RetryableCodes = append(out.RetryableCodes, c)
		}
	}
	return out, nil
}

func deadlineFromProto(p *meshnodev1.DeadlineSettings) (DeadlineConfig, error) {
	out := DefaultDeadline()
	if p == nil {
		return out, nil
	}
	var err error
	if out.HopReserve, err = duration("deadline.hop_reserve", p.GetHopReserve(), out.HopReserve, false); err != nil {
		return out, err
	}
	if out.MinRemaining, err = duration("deadline.min_remaining", p.GetMinRemaining(), out.MinRemaining, false); err != nil {
		return out, err
	}
	if out.DefaultTimeout, err = duration("deadline.default_timeout", p.GetDefaultTimeout(), out.DefaultTimeout, true); err != nil {
		return out, err
	}
	if out.DefaultTimeout <= out.HopReserve+out.MinRemaining {
		return out, fieldErr("deadline.default_timeout", "%v leaves no time after hop_reserve %v and min_remaining %v", out.DefaultTimeout, out.HopReserve, out.MinRemaining)
	}
	return out, nil
}

// parseCode accepts "UNAVAILABLE", "Unavailable" or "unavailable".
func parseCode(name string) (codes.Code, bool) {
	want := strings.ReplaceAll(strings.ToUpper(strings.TrimSpace(name)), "_", "")
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.ToUpper(c.String()) == want {
			return c, true
		}
	}
	return 0, false
}

func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// ToProto renders p with every field set, for GetPolicy's "effective" view.
func (p Policy) ToProto() *meshnodev1.RoutingPolicy {
	dur := durationpb.New
	out := &meshnodev1.RoutingPolicy{
		Capability:       p.Capability,
		Policy:           string(p.Name),
		QualityTiers:     slices.Clone(p.QualityTiers),
		QualityHardFloor: proto.Float64(p.HardFloor),
		Proficiency: &meshnodev1.ProficiencyRules{
			ReserveExperts: proto.Bool(p.Proficiency.ReserveExperts),
			Saturation:     proto.Float64(p.Proficiency.Saturation),
		},
		Locality: [...]meshnodev1.LocalityPreference{
			LocalityPrefer: meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_PREFER_LOCAL,
			LocalityNone:   meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_NONE,
			LocalityOnly:   meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_LOCAL_ONLY,
		}[p.Locality],
		CircuitBreaker: &meshnodev1.CircuitBreakerSettings{
			Disabled:             p.Breaker.Disabled,
			ConsecutiveFailures:  uint32(p.Breaker.ConsecutiveFailures),
			FailureRateThreshold: proto.Float64(p.Breaker.FailureRate),
			Window:               dur(p.Breaker.Window),
			MinRequests:          uint32(p.Breaker.MinRequests),
			OpenDuration:         dur(p.Breaker.OpenDuration),
			MaxOpenDuration:      dur(p.Breaker.MaxOpenDuration),
			OpenJitter:           proto.Float64(p.Breaker.OpenJitter),
			HalfOpenProbes:       uint32(p.Breaker.HalfOpenProbes),
		},
		Retry: &meshnodev1.RetrySettings{
			MaxAttempts:         uint32(p.Retry.MaxAttempts),
			BackoffBase:         dur(p.Retry.BackoffBase),
			BackoffMax:          dur(p.Retry.BackoffMax),
			BudgetRatio:         proto.Float64(p.Retry.BudgetRatio),
			MinRetriesPerSecond: proto.Float64(p.Retry.MinRetriesPerSec),
			BudgetWindow:        dur(p.Retry.BudgetWindow),
		},
		Deadline: &meshnodev1.DeadlineSettings{
			HopReserve:     dur(p.Deadline.HopReserve),
			MinRemaining:   dur(p.Deadline.MinRemaining),
			DefaultTimeout: dur(p.Deadline.DefaultTimeout),
		},
		MaxHops:            uint32(p.MaxHops),
		FallbackCapability: p.Fallback,
	}
	if !math.IsInf(p.MaxCost, 1) {
		out.MaxCost = proto.Float64(p.MaxCost)
	}
	for _, l := range p.Proficiency.Levels {
		out.Proficiency.Levels = append(out.Proficiency.Levels, &meshnodev1.ComplexityLevel{
			MinComplexity: uint32(l.MinComplexity), MinProficiency: meshnodev1.Proficiency(l.MinProficiency)})
	}
	for _, c := range p.Retry.RetryableCodes {
		out.Retry.RetryableCodes = append(out.Retry.RetryableCodes, codeName(c))
	}
	return out
}

// requiredProficiency turns a request's complexity and explicit minimum into
// the proficiency floor.
func (r ProficiencyRules) required(complexity int, min Proficiency) Proficiency {
	need := min
	for _, l := range r.Levels {
		if complexity >= l.MinComplexity && l.MinProficiency > need {
			need = l.MinProficiency
		}
	}
	return need
}
