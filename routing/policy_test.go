package routing

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestValidateRefuses(t *testing.T) {
	d := durationpb.New
	cases := []struct {
		name  string
		p     *meshnodev1.RoutingPolicy
		field string
	}{
		{"unknown policy name", &meshnodev1.RoutingPolicy{Policy: "fastest"}, "policy"},
		{"quality floor above 100%", &meshnodev1.RoutingPolicy{QualityHardFloor: proto.Float64(1.5)}, "quality_hard_floor"},
		{"quality floor negative", &meshnodev1.RoutingPolicy{QualityHardFloor: proto.Float64(-0.1)}, "quality_hard_floor"},
		{"quality floor NaN", &meshnodev1.RoutingPolicy{QualityHardFloor: proto.Float64(math.NaN())}, "quality_hard_floor"},
		{"tier above 100%", &meshnodev1.RoutingPolicy{QualityTiers: []float64{95, 90}}, "quality_tiers[0]"},
		{"tiers ascending", &meshnodev1.RoutingPolicy{QualityTiers: []float64{0.90, 0.95}}, "quality_tiers[1]"},
		{"tiers equal", &meshnodev1.RoutingPolicy{QualityTiers: []float64{0.95, 0.95}}, "quality_tiers[1]"},
		{"tier below hard floor", &meshnodev1.RoutingPolicy{QualityTiers: []float64{0.95, 0.60}}, "quality_tiers[1]"},
		{"default tiers below raised floor", &meshnodev1.RoutingPolicy{QualityHardFloor: proto.Float64(0.92)}, "quality_tiers[1]"},
		{"negative max cost", &meshnodev1.RoutingPolicy{MaxCost: proto.Float64(-1)}, "max_cost"},
		{"breaker zero window", &meshnodev1.RoutingPolicy{CircuitBreaker: &meshnodev1.CircuitBreakerSettings{Window: d(0)}}, "circuit_breaker.window"},
		{"breaker negative window", &meshnodev1.RoutingPolicy{CircuitBreaker: &meshnodev1.CircuitBreakerSettings{Window: d(-time.Second)}}, "circuit_breaker.window"},
		{"breaker zero open duration", &meshnodev1.RoutingPolicy{CircuitBreaker: &meshnodev1.CircuitBreakerSettings{OpenDuration: d(0)}}, "circuit_breaker.open_duration"},
		{"breaker failure rate zero", &meshnodev1.RoutingPolicy{CircuitBreaker: &meshnodev1.CircuitBreakerSettings{FailureRateThreshold: proto.Float64(0)}}, "circuit_breaker.failure_rate_threshold"},
		{"breaker failure rate above 1", &meshnodev1.RoutingPolicy{CircuitBreaker: &meshnodev1.CircuitBreakerSettings{FailureRateThreshold: proto.Float64(1.2)}}, "circuit_breaker.failure_rate_threshold"},
		{"breaker jitter 1", &meshnodev1.RoutingPolicy{CircuitBreaker: &meshnodev1.CircuitBreakerSettings{OpenJitter: proto.Float64(1)}}, "circuit_breaker.open_jitter"},
		{"breaker max open below open", &meshnodev1.RoutingPolicy{CircuitBreaker: &meshnodev1.CircuitBreakerSettings{OpenDuration: d(time.Minute), MaxOpenDuration: d(time.Second)}}, "circuit_breaker.max_open_duration"},
		{"retry too many attempts", &meshnodev1.RoutingPolicy{Retry: &meshnodev1.RetrySettings{MaxAttempts: 11}}, "retry.max_attempts"},
		{"retry backoff max below base", &meshnodev1.RoutingPolicy{Retry: &meshnodev1.RetrySettings{BackoffBase: d(time.Second), BackoffMax: d(time.Millisecond)}}, "retry.backoff_max"},
		{"retry budget ratio above 1", &meshnodev1.RoutingPolicy{Retry: &meshnodev1.RetrySettings{BudgetRatio: proto.Float64(2)}}, "retry.budget_ratio"},
		{"retry negative floor", &meshnodev1.RoutingPolicy{Retry: &meshnodev1.RetrySettings{MinRetriesPerSecond: proto.Float64(-1)}}, "retry.min_retries_per_second"},
		{"retry zero budget window", &meshnodev1.RoutingPolicy{Retry: &meshnodev1.RetrySettings{BudgetWindow: d(0)}}, "retry.budget_window"},
		{"retry unknown code", &meshnodev1.RoutingPolicy{Retry: &meshnodev1.RetrySettings{RetryableCodes: []string{"UNAVAILABLE", "TEAPOT"}}}, "retry.retryable_codes[1]"},
		{"retry OK code", &meshnodev1.RoutingPolicy{Retry: &meshnodev1.RetrySettings{RetryableCodes: []string{"OK"}}}, "retry.retryable_codes[0]"},
		{"deadline negative reserve", &meshnodev1.RoutingPolicy{Deadline: &meshnodev1.DeadlineSettings{HopReserve: d(-time.Millisecond)}}, "deadline.hop_reserve"},
		{"deadline timeout below reserve", &meshnodev1.RoutingPolicy{Deadline: &meshnodev1.DeadlineSettings{DefaultTimeout: d(time.Millisecond)}}, "deadline.default_timeout"},
		{"max hops too high", &meshnodev1.RoutingPolicy{MaxHops: 100}, "max_hops"},
		{"fallback to itself", &meshnodev1.RoutingPolicy{Capability: "a.b", FallbackCapability: "a.b"}, "fallback_capability"},
		{"capability with space", &meshnodev1.RoutingPolicy{Capability: "a b"}, "capability"},
		{"complexity out of range", &meshnodev1.RoutingPolicy{Proficiency: &meshnodev1.ProficiencyRules{Levels: []*meshnodev1.ComplexityLevel{{MinComplexity: 11}}}}, "proficiency.levels[0].min_complexity"},
		{"proficiency rules inverted", &meshnodev1.RoutingPolicy{Proficiency: &meshnodev1.ProficiencyRules{Levels: []*meshnodev1.ComplexityLevel{
			{MinComplexity: 2, MinProficiency: meshnodev1.Proficiency_PROFICIENCY_EXPERT},
			{MinComplexity: 8, MinProficiency: meshnodev1.Proficiency_PROFICIENCY_NOVICE}}}}, "proficiency.levels"},
		{"saturation zero", &meshnodev1.RoutingPolicy{Proficiency: &meshnodev1.ProficiencyRules{Saturation: proto.Float64(0)}}, "proficiency.saturation"},
		{"unknown locality", &meshnodev1.RoutingPolicy{Locality: 42}, "locality"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.p)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a *FieldError", err)
			}
			if fe.Field != tc.field {
				t.Fatalf("field = %q (%v), want %q", fe.Field, err, tc.field)
			}
			if fe.Reason == "" || !strings.HasPrefix(err.Error(), tc.field+": ") {
				t.Fatalf("error %q does not name field and reason", err)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, p := range []*meshnodev1.RoutingPolicy{
		nil,
		{},
		{Capability: "*", Policy: "cost", QualityTiers: []float64{0.99, 0.9, 0.8}, QualityHardFloor: proto.Float64(0.8), MaxCost: proto.Float64(0)},
		{Policy: "ROUND_ROBIN", CircuitBreaker: &meshnodev1.CircuitBreakerSettings{Disabled: true}},
		{Retry: &meshnodev1.RetrySettings{MaxAttempts: 1, RetryableCodes: []string{"resource_exhausted", "Unavailable"}}},
		{QualityHardFloor: proto.Float64(0)},
	} {
		if err := Validate(p); err != nil {
			t.Errorf("Validate(%v) = %v", p, err)
		}
	}
}

func TestPolicyDefaults(t *testing.T) {
	p, err := PolicyFromProto(&meshnodev1.RoutingPolicy{Capability: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != Latency || p.MaxHops != 8 || p.HardFloor != 0.7 || !reflect.DeepEqual(p.QualityTiers, []float64{0.95, 0.90}) ||
		p.Retry.BudgetRatio != 0.2 || p.Retry.MinRetriesPerSec != 10 || p.Retry.MaxAttempts != 3 ||
		p.Breaker.ConsecutiveFailures != 5 || !math.IsInf(p.MaxCost, 1) || p.Retry.RetryableCodes[0] != codes.Unavailable {
		t.Fatalf("defaults wrong: %+v", p)
	}
}

// The effective proto view converts back to the same policy.
func TestPolicyProtoRoundTrip(t *testing.T) {
	in := &meshnodev1.RoutingPolicy{Capability: "c", Policy: "cost", QualityTiers: []float64{0.99, 0.8}, QualityHardFloor: proto.Float64(0.75),
		MaxCost: proto.Float64(3), Locality: meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_LOCAL_ONLY, MaxHops: 4, FallbackCapability: "d",
		Retry: &meshnodev1.RetrySettings{RetryableCodes: []string{"RESOURCE_EXHAUSTED"}}}
	p, err := PolicyFromProto(in)
	if err != nil {
		t.Fatal(err)
	}
	q, err := PolicyFromProto(p.ToProto())
	if err != nil {
		t.Fatalf("effective proto invalid: %v", err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip changed policy:\n%+v\n%+v", p, q)
	}
	if got := DefaultPolicy().ToProto(); got.MaxCost != nil || got.GetRetry().GetRetryableCodes()[0] != "UNAVAILABLE" {
		t.Fatalf("default effective proto: %v", got)
	}
}
