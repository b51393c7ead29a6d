package routing

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Candidate is one agent able to serve a capability, with the hints the node
// has about it. The node builds it from the registry (meshnodev1.Agent and
// its Capability entry) and gossip (meshnodev1.AgentLoad).
type Candidate struct {
	AgentID    string
	Node       string
	Capability CandidateCapability
	Ready      bool // a Serve stream is open
	Draining   bool // finishing in-flight calls, takes no new ones
	NodeAlive  bool // the agent's node is alive in gossip
	Load       GossipLoad
}

// CandidateCapability is the agent's registered entry for the capability.
type CandidateCapability struct {
	Name           string
	Attributes     map[string]string
	Proficiency    Proficiency
	Cost           float64
	MaxConcurrency int // 0: unlimited
}

// GossipLoad is what gossip last said about the agent. Zero values mean unknown.
type GossipLoad struct {
	InFlight    int
	Capacity    int           // 0: use Capability.MaxConcurrency
	EWMALatency time.Duration // 0: unknown
	SuccessRate float64       // 0 with HasSuccessRate false: unknown
	// HasSuccessRate tells a measured 0% apart from "unknown".
	HasSuccessRate bool
}

// capacity is the number of calls the agent takes at once; 0 is unlimited.
func (c *Candidate) capacity() int {
	if c.Load.Capacity > 0 {
		return c.Load.Capacity
	}
	return c.Capability.MaxConcurrency
}

// Operator is a constraint's comparison.
type Operator int

// Constraint operators; they mirror meshnodev1.ConstraintOperator.
const (
	OpEquals Operator = iota + 1
	OpNotEquals
	OpIn
	OpNotIn
	OpRange
	OpExists
)

// Constraint restricts candidates by one capability attribute.
type Constraint struct {
	Key    string
	Op     Operator
	Values []string
	Min    float64 // -Inf when unbounded
	Max    float64 // +Inf when unbounded
}

// Match reports whether attrs satisfy the constraint.
func (c Constraint) Match(attrs map[string]string) bool {
	v, ok := attrs[c.Key]
	switch c.Op {
	case OpEquals:
		return ok && len(c.Values) > 0 && v == c.Values[0]
	case OpNotEquals:
		return !ok || len(c.Values) == 0 || v != c.Values[0]
	case OpIn:
		return ok && slices.Contains(c.Values, v)
	case OpNotIn:
		return !ok || !slices.Contains(c.Values, v)
	case OpRange:
		if !ok {
			return false
		}
		f, err := strconv.ParseFloat(v, 64)
		return err == nil && !math.IsNaN(f) && f >= c.Min && f <= c.Max
	case OpExists:
		return ok
	}
	return false
}

func (c Constraint) String() string {
	switch c.Op {
	case OpEquals:
		return fmt.Sprintf("%s=%s", c.Key, first(c.Values))
	case OpNotEquals:
		return fmt.Sprintf("%s!=%s", c.Key, first(c.Values))
	case OpIn:
		return fmt.Sprintf("%s in %v", c.Key, c.Values)
	case OpNotIn:
		return fmt.Sprintf("%s not in %v", c.Key, c.Values)
	case OpRange:
		return fmt.Sprintf("%s in [%v, %v]", c.Key, c.Min, c.Max)
	case OpExists:
		return c.Key + " exists"
	}
	return c.Key + " ?"
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Limits on constraints from callers (untrusted input).
const (
	maxConstraints      = 64
	maxConstraintValues = 256
	maxPreferred        = 64
)

// ConstraintsFromProto converts and checks a call's constraints. Errors name
// the constraint ("constraints[2].values") and the reason.
func ConstraintsFromProto(cs []*meshnodev1.AttributeConstraint) ([]Constraint, error) {
	if len(cs) > maxConstraints {
		return nil, fieldErr("constraints", "at most %d constraints, got %d", maxConstraints, len(cs))
	}
	out := make([]Constraint, 0, len(cs))
	for i, pc := range cs {
		f := fmt.Sprintf("constraints[%d]", i)
		c := Constraint{Key: pc.GetKey(), Values: slices.Clone(pc.GetValues()), Min: math.Inf(-1), Max: math.Inf(1)}
		if c.Key == "" {
			return nil, fieldErr(f+".key", "must not be empty")
		}
		if len(c.Values) > maxConstraintValues {
			return nil, fieldErr(f+".values", "at most %d values", maxConstraintValues)
		}
		switch pc.GetOperator() {
		case meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_EQUALS, meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_NOT_EQUALS:
			if len(c.Values) != 1 {
				return nil, fieldErr(f+".values", "%v needs exactly one value, got %d", pc.GetOperator(), len(c.Values))
			}
		case meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_IN, meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_NOT_IN:
			if len(c.Values) == 0 {
				return nil, fieldErr(f+".values", "%v needs at least one value", pc.GetOperator())
			}
		case meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_RANGE:
			if pc.Min != nil {
				c.Min = pc.GetMin()
			}
			if pc.Max != nil {
				c.Max = pc.GetMax()
			}
			if math.IsNaN(c.Min) || math.IsNaN(c.Max) || c.Min > c.Max {
				return nil, fieldErr(f, "range [%v, %v] is empty", c.Min, c.Max)
			}
		case meshnodev1.ConstraintOperator_CONSTRAINT_OPERATOR_EXISTS:
		default:
			return nil, fieldErr(f+".operator", "unknown operator %d", pc.GetOperator())
		}
		c.Op = Operator(pc.GetOperator())
		out = append(out, c)
	}
	return out, nil
}

// Overrides adjust the policy for one call (meshnodev1.RoutingOverrides).
type Overrides struct {
	Policy          PolicyName // "" keeps the policy's
	PreferredAgents []string
	MinProficiency  Proficiency
	Complexity      int
	MaxCost         float64 // 0 with HasMaxCost false: keep the policy's
	HasMaxCost      bool
	Locality        *Locality // nil keeps the policy's
	Constraints     []Constraint
}

// OverridesFromProto converts and checks a call's overrides; nil is no override.
func OverridesFromProto(o *meshnodev1.RoutingOverrides) (Overrides, error) {
	var out Overrides
	if o == nil {
		return out, nil
	}
	var err error
	if out.Policy, err = ParsePolicyName(o.GetPolicy(), ""); err != nil {
		return out, fieldErr("overrides.policy", "%v", err)
	}
	if len(o.GetPreferredAgentIds()) > maxPreferred {
		return out, fieldErr("overrides.preferred_agent_ids", "at most %d agents", maxPreferred)
	}
	out.PreferredAgents = slices.Clone(o.GetPreferredAgentIds())
	if p := o.GetMinProficiency(); p < 0 || p > meshnodev1.Proficiency_PROFICIENCY_EXPERT {
		return out, fieldErr("overrides.min_proficiency", "unknown proficiency %d", p)
	}
	out.MinProficiency = Proficiency(o.GetMinProficiency())
	if o.GetComplexity() > maxComplexity {
		return out, fieldErr("overrides.complexity", "must be 0-%d, got %d", maxComplexity, o.GetComplexity())
	}
	out.Complexity = int(o.GetComplexity())
	if o.MaxCost != nil {
		out.MaxCost, out.HasMaxCost = o.GetMaxCost(), true
		if out.MaxCost < 0 || math.IsNaN(out.MaxCost) {
			return out, fieldErr("overrides.max_cost", "must not be negative, got %v", out.MaxCost)
		}
	}
	if o.GetLocality() != meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_UNSPECIFIED {
		l, err := localityFromProto("overrides.locality", o.GetLocality(), LocalityPrefer)
		if err != nil {
			return out, err
		}
		out.Locality = &l
	}
	if out.Constraints, err = ConstraintsFromProto(o.GetConstraints()); err != nil {
		var fe *FieldError
		if asFieldError(err, &fe) {
			fe.Field = "overrides." + fe.Field
		}
		return out, err
	}
	return out, nil
}
