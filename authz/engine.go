package authz

import (
	"fmt"
	"slices"
	"strings"
)

// Subject is an agent as the policy sees it. ID is "<node>/<name>"; an
// empty ID is a process that called without naming an agent, which has no
// roles and matches no from_agent pattern.
type Subject struct {
	ID     string
	UID    uint32
	HasUID bool // the agent's node recorded its owner's uid
}

// Decision is one answer and the rule that gave it.
type Decision struct {
	Allowed bool
	// Rule names what decided: "rbac.yaml: call_rules[3] processing ->
	// admin.*: deny", or the mode's default.
	Rule string
}

// Engine is a compiled policy. It is immutable and safe for concurrent use;
// compile once per policy version, not per call.
type Engine struct {
	version  uint64
	source   string
	mode     string
	bindings []binding
	calls    []*callRule
	serves   []*serveRule
	// byRole and byAgent split calls by their from side, in policy order,
	// so a decision looks only at the rules of the caller's roles and the
	// agent-pattern rules, not at every rule.
	byRole  map[string][]*callRule
	byAgent []*callRule
}

// index builds byRole and byAgent from calls.
func (e *Engine) index() {
	e.byRole = map[string][]*callRule{}
	for _, r := range e.calls {
		if r.fromAgent != nil {
			e.byAgent = append(e.byAgent, r)
		} else {
			e.byRole[r.fromRole] = append(e.byRole[r.fromRole], r)
		}
	}
}

// Version is the Raft index the policy was stored at (0: none).
func (e *Engine) Version() uint64 { return e.version }

// Mode is ModeAllow or ModeDeny.
func (e *Engine) Mode() string { return e.mode }

// Empty reports whether the engine allows everything without looking at
// anyone's roles: mode allow and no rules. The call path skips role
// lookups then.
func (e *Engine) Empty() bool {
	return e.mode == ModeAllow && len(e.calls) == 0 && len(e.serves) == 0
}

func (e *Engine) ruleName(list string, i int, what string) string {
	src := e.source
	if src == "" {
		src = "authz policy"
	}
	return fmt.Sprintf("%s: %s[%d] %s", src, list, i, what)
}

// Roles are the roles the bindings grant s, sorted, without duplicates.
// What an agent claimed at registration plays no part.
func (e *Engine) Roles(s Subject) []string {
	if s.ID == "" {
		return nil
	}
	node, name, ok := strings.Cut(s.ID, "/")
	if !ok {
		return nil
	}
	var out []string
	for i := range e.bindings {
		b := &e.bindings[i]
		if !b.node.match(node) || !b.agent.match(name) || (b.hasUID && (!s.HasUID || s.UID != b.uid)) {
			continue
		}
		for _, r := range b.roles {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Call decides whether caller may call capability. callee is the agent
// chosen to answer, or nil when it is not known yet: rules naming a callee
// role then do not match (the decision is made again, authoritatively,
// once the callee is known). Any matching deny rule wins; otherwise the
// first matching allow rule; otherwise the mode.
func (e *Engine) Call(caller Subject, capability string, callee *Subject) Decision {
	var to *Principal
	if callee != nil {
		p := e.Resolve(*callee)
		to = &p
	}
	return e.CallAs(e.Resolve(caller), capability, to)
}

// Principal is a subject with the roles this engine's bindings grant it:
// resolve once (Resolve) and decide many times (CallAs, ServeAs).
type Principal struct {
	ID    string
	Roles []string
}

// Resolve grants s its roles under this engine's bindings.
func (e *Engine) Resolve(s Subject) Principal { return Principal{ID: s.ID, Roles: e.Roles(s)} }

// CallAs is Call for principals already resolved by this engine.
func (e *Engine) CallAs(caller Principal, capability string, callee *Principal) Decision {
	if len(e.calls) == 0 {
		return e.byMode(caller.ID, capability)
	}
	callerRoles := caller.Roles
	var calleeRoles []string
	if callee != nil {
		calleeRoles = callee.Roles
	}
	// The answer is the lowest-numbered matching deny, else the
	// lowest-numbered matching allow: what a scan of every rule in order
	// would give, looking only at the rules that can match this caller.
	var deny, allow *callRule
	consider := func(rules []*callRule) {
		for _, r := range rules {
			if deny != nil && r.index > deny.index {
				return
			}
			if !r.matchesFrom(caller.ID, callerRoles) || !r.matchesTo(capability, callee != nil, calleeRoles) {
				continue
			}
			if r.deny {
				deny = r
				return
			}
			if allow == nil || r.index < allow.index {
				allow = r
			}
		}
	}
	consider(e.byAgent)
	for _, role := range callerRoles {
		consider(e.byRole[role])
	}
	if deny != nil {
		return Decision{Allowed: false, Rule: deny.name}
	}
	if allow != nil {
		return Decision{Allowed: true, Rule: allow.name}
	}
	return e.byMode(caller.ID, capability)
}

func (e *Engine) byMode(caller, capability string) Decision {
	if e.mode == ModeDeny {
		who := caller
		if who == "" {
			who = "a process that named no agent"
		}
		return Decision{Allowed: false, Rule: fmt.Sprintf("mode deny: no call rule allows %s -> %s", who, capability)}
	}
	return Decision{Allowed: true, Rule: "mode allow: no call rule matched"}
}

func (r *callRule) matchesFrom(id string, roles []string) bool {
	if r.fromAgent != nil {
		return id != "" && r.fromAgent.match(id)
	}
	return slices.Contains(roles, r.fromRole)
}

func (r *callRule) matchesTo(capability string, calleeKnown bool, roles []string) bool {
	if r.toCap != nil {
		return r.toCap.match(capability)
	}
	return calleeKnown && slices.Contains(roles, r.toRole)
}

// Serve decides whether agent may register (and so serve) capability. A
// capability some serve rule matches needs one of the roles of a matching
// rule; one no rule matches follows the mode.
func (e *Engine) Serve(agent Subject, capability string) Decision {
	return e.ServeAs(e.Resolve(agent), capability)
}

// ServeAs is Serve for a principal already resolved by this engine.
func (e *Engine) ServeAs(agent Principal, capability string) Decision {
	var first *serveRule
	for _, r := range e.serves {
		if !r.capability.match(capability) {
			continue
		}
		if first == nil {
			first = r
		}
		for _, want := range r.roles {
			if slices.Contains(agent.Roles, want) {
				return Decision{Allowed: true, Rule: r.name}
			}
		}
	}
	if first != nil {
		return Decision{Allowed: false, Rule: first.name}
	}
	if e.mode == ModeDeny {
		return Decision{Allowed: false, Rule: fmt.Sprintf("mode deny: no serve rule covers %s", capability)}
	}
	return Decision{Allowed: true, Rule: "mode allow: no serve rule covers " + capability}
}
