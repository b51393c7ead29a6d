package routing

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestCandidateFromAgent(t *testing.T) {
	a := &meshnodev1.Agent{Id: "n1/x", Node: "n1", Status: meshnodev1.AgentStatus_AGENT_STATUS_READY,
		Capabilities: []*meshnodev1.Capability{{Name: "other"}, {Name: "cap", Attributes: map[string]string{"k": "v"},
			Proficiency: meshnodev1.Proficiency_PROFICIENCY_EXPERT, Cost: 2.5, MaxConcurrency: 4}}}
	c, ok := CandidateFromAgent(a, "cap", &meshnodev1.AgentLoad{InFlight: 2, EwmaLatencyMs: 12.5, SuccessRate: 0.9, Status: "ready"}, true)
	want := Candidate{AgentID: "n1/x", Node: "n1", Ready: true, NodeAlive: true,
		Capability: CandidateCapability{Name: "cap", Attributes: map[string]string{"k": "v"}, Proficiency: ProficiencyExpert, Cost: 2.5, MaxConcurrency: 4},
		Load:       GossipLoad{InFlight: 2, EWMALatency: 12500 * time.Microsecond, SuccessRate: 0.9, HasSuccessRate: true}}
	if !ok || !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	revoked := proto.CloneOf(a)
	revoked.Status = meshnodev1.AgentStatus_AGENT_STATUS_REVOKED
	// Even with a fresh "ready" load report: its node was revoked.
	if _, ok := CandidateFromAgent(revoked, "cap", &meshnodev1.AgentLoad{Status: "ready"}, true); ok {
		t.Fatal("an agent of a revoked node is a candidate")
	}
	if _, ok := CandidateFromAgent(a, "missing", nil, true); ok {
		t.Fatal("candidate for a capability the agent lacks")
	}
	c, _ = CandidateFromAgent(a, "cap", &meshnodev1.AgentLoad{Status: "draining"}, true)
	if !c.Draining || c.Load.HasSuccessRate {
		t.Fatalf("draining load: %+v", c)
	}
	a.Flagged = true
	if c, _ = CandidateFromAgent(a, "cap", nil, true); c.Ready {
		t.Fatal("flagged agent is ready")
	}
}

func TestPolicyFor(t *testing.T) {
	stored := map[string]*meshnodev1.RoutingPolicy{
		"*":    {Capability: "*", Policy: "cost"},
		"fast": {Capability: "fast", Policy: "latency", MaxHops: 3},
		"bad":  {Capability: "bad", Policy: "nope"},
	}
	lookup := func(k string) *meshnodev1.RoutingPolicy { return stored[k] }
	if p, src, err := PolicyFor("fast", lookup); err != nil || src != "fast" || p.Name != Latency || p.MaxHops != 3 {
		t.Fatalf("fast: %+v %q %v", p, src, err)
	}
	if p, src, err := PolicyFor("other", lookup); err != nil || src != "*" || p.Name != Cost || p.MaxHops != 8 {
		t.Fatalf("other: %+v %q %v", p, src, err)
	}
	if _, _, err := PolicyFor("bad", lookup); err == nil {
		t.Fatal("invalid stored policy accepted")
	}
	delete(stored, "*")
	if p, src, err := PolicyFor("other", lookup); err != nil || src != "" || p.Name != Latency {
		t.Fatalf("built-in: %+v %q %v", p, src, err)
	}
}

func TestOverridesFromProto(t *testing.T) {
	bad := []struct {
		o     *meshnodev1.RoutingOverrides
		field string
	}{
		{&meshnodev1.RoutingOverrides{Policy: "random"}, "overrides.policy"},
		{&meshnodev1.RoutingOverrides{Complexity: 11}, "overrides.complexity"},
		{&meshnodev1.RoutingOverrides{MaxCost: proto.Float64(-2)}, "overrides.max_cost"},
		{&meshnodev1.RoutingOverrides{MinProficiency: 9}, "overrides.min_proficiency"},
		{&meshnodev1.RoutingOverrides{Locality: 9}, "overrides.locality"},
		{&meshnodev1.RoutingOverrides{Constraints: []*meshnodev1.AttributeConstraint{{Key: "k"}}}, "overrides.constraints[0].operator"},
		{&meshnodev1.RoutingOverrides{Constraints: []*meshnodev1.AttributeConstraint{{Operator: meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_EXISTS}}}, "overrides.constraints[0].key"},
		{&meshnodev1.RoutingOverrides{Constraints: []*meshnodev1.AttributeConstraint{{Key: "k", Operator: meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_EQUALS}}}, "overrides.constraints[0].values"},
		{&meshnodev1.RoutingOverrides{Constraints: []*meshnodev1.AttributeConstraint{{Key: "k", Operator: meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_RANGE, Min: proto.Float64(5), Max: proto.Float64(1)}}}, "overrides.constraints[0]"},
	}
	for _, tc := range bad {
		_, err := OverridesFromProto(tc.o)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%v: got %v, want field %q", tc.o, err, tc.field)
		}
	}
	o, err := OverridesFromProto(&meshnodev1.RoutingOverrides{Policy: "cost", Complexity: 7, MaxCost: proto.Float64(3),
		Locality:    meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_NONE,
		Constraints: []*meshnodev1.AttributeConstraint{{Key: "n", Operator: meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_RANGE, Min: proto.Float64(1)}}})
	if err != nil || o.Policy != Cost || o.Complexity != 7 || !o.HasMaxCost || *o.Locality != LocalityNone ||
		!o.Constraints[0].Match(map[string]string{"n": "1e6"}) || o.Constraints[0].Match(map[string]string{"n": "0.5"}) {
		t.Fatalf("overrides: %+v %v", o, err)
	}
}

// FuzzPolicyFromProto: a policy from SetPolicy either is refused or converts
// to an effective policy that converts back to itself.
func FuzzPolicyFromProto(f *testing.F) {
	seed, _ := proto.Marshal(DefaultPolicy().ToProto())
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var pp meshnodev1.RoutingPolicy
		if proto.Unmarshal(b, &pp) != nil {
			return
		}
		p, err := PolicyFromProto(&pp)
		if err != nil {
			return
		}
		q, err := PolicyFromProto(p.ToProto())
		if err != nil {
			t.Fatalf("effective policy of a valid policy is invalid: %v", err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip changed the policy")
		}
	})
}

// FuzzOverridesFromProto: caller overrides never panic and constraints
// never match in a way that contradicts their operator's basic contract.
func FuzzOverridesFromProto(f *testing.F) {
	seed, _ := proto.Marshal(&meshnodev1.RoutingOverrides{Policy: "cost", Constraints: []*meshnodev1.AttributeConstraint{
		{Key: "k", Operator: meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_IN, Values: []string{"a"}}}})
	f.Add(seed, "a")
	f.Fuzz(func(t *testing.T, b []byte, v string) {
		var po meshnodev1.RoutingOverrides
		if proto.Unmarshal(b, &po) != nil {
			return
		}
		o, err := OverridesFromProto(&po)
		if err != nil {
			return
		}
		for _, c := range o.Constraints {
			if c.Match(map[string]string{}) && (c.Op == OpEquals || c.Op == OpIn || c.Op == OpRange || c.Op == OpExists) {
				t.Fatalf("%v matched an agent without the attribute", c)
			}
			_ = c.Match(map[string]string{c.Key: v})
		}
	})
}

// Many goroutines route concurrently through one router (run with -race).
func TestConcurrentRoutes(t *testing.T) {
	clock := newFakeClock()
	r := newTestRouter(t, clock, 50)
	cs := cands(8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			inv := InvokerFunc(func(context.Context, Attempt) (bool, error) {
				clock.Advance(time.Millisecond)
				if rng.IntN(10) == 0 {
					return false, errors.New("flaky")
				}
				return true, nil
			})
			for range 300 {
				_, _ = r.Route(context.Background(), Request{Capability: "cap", Policy: policyNamed(PolicyNames[rng.IntN(4)])}, cs, inv)
			}
		})
	}
	wg.Wait()
	for _, c := range cs {
		if st, ok := r.Stats(c.AgentID, "cap", c); ok && st.InFlight != 0 {
			t.Fatalf("%s has %d calls in flight after all returned", c.AgentID, st.InFlight)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{{OutlierFactor: 0.5}, {LatencyDecay: -1}, {SuccessPrior: -1}, {IdleExpiry: -time.Second}} {
		var fe *FieldError
		if _, err := NewRouter(cfg); !errors.As(err, &fe) {
			t.Errorf("NewRouter(%+v) = %v, want a field error", cfg, err)
		}
	}
	if _, err := NewRouter(Config{}); err != nil {
		t.Fatalf("zero config: %v", err)
	}
}

// The router's own in-flight count enforces capacity before gossip catches up.
func TestOwnInFlightEnforcesCapacity(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 60)
	cs := cands(1)
	cs[0].Capability.MaxConcurrency = 1
	var inner error
	inv := InvokerFunc(func(context.Context, Attempt) (bool, error) {
		_, inner = r.Route(context.Background(), Request{Capability: "cap"}, cs, okInvoker)
		return true, nil
	})
	if _, err := r.Route(context.Background(), Request{Capability: "cap"}, cs, inv); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(inner, ErrNoneAvailable) || !strings.Contains(inner.Error(), "1 at capacity") {
		t.Fatalf("second concurrent call: %v", inner)
	}
	if _, err := r.Route(context.Background(), Request{Capability: "cap"}, cs, okInvoker); err != nil {
		t.Fatalf("capacity not released: %v", err)
	}
}
