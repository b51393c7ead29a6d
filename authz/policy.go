package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Modes and actions as a policy spells them.
const (
	ModeAllow   = "allow"
	ModeDeny    = "deny"
	ActionAllow = "allow"
	ActionDeny  = "deny"
)

// Limits on a policy document, so one signed command cannot make every
// node compile (and every call scan) an unbounded rule set.
const (
	MaxBindings = 4096
	MaxRules    = 4096
	maxRoles    = 64
	maxRoleLen  = 64
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid authorization policy")

// FieldError is a validation error naming the field at fault by its path
// in the document ("call_rules[2].to_capability"), so the YAML decoder can
// add the line.
type FieldError struct {
	Source string // the policy's file name, "" if none
	Path   string
	Line   int // 0 when unknown
	Msg    string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Path)
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(src, path, format string, args ...any) error {
	return &FieldError{Source: src, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks a policy without keeping the compiled form.
func Validate(p *meshnodev1.AuthzPolicy) error {
	_, err := Compile(p, 0)
	return err
}

func validRole(r string) error {
	if r == "" || len(r) > maxRoleLen {
		return fmt.Errorf("role must be 1-%d bytes", maxRoleLen)
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("role %q: character %q is not allowed (letters, digits, . - _)", r, c)
		}
	}
	return nil
}

// Compile validates p and compiles it for deciding; version is the Raft
// index it was stored at (0 for none), carried into decisions' messages.
// A nil p is the zero-config policy: mode allow, no rules.
func Compile(p *meshnodev1.AuthzPolicy, version uint64) (*Engine, error) {
	e := &Engine{version: version, source: p.GetSource(), mode: p.GetMode()}
	src := p.GetSource()
	switch e.mode {
	case "":
		e.mode = ModeAllow
	case ModeAllow, ModeDeny:
	default:
		return nil, fieldErr(src, "mode", "must be %q or %q, got %q", ModeAllow, ModeDeny, e.mode)
	}
	if n := len(p.GetBindings()); n > MaxBindings {
		return nil, fieldErr(src, "bindings", "at most %d, got %d", MaxBindings, n)
	}
	if n := len(p.GetCallRules()) + len(p.GetServeRules()); n > MaxRules {
		return nil, fieldErr(src, "call_rules", "at most %d call and serve rules together, got %d", MaxRules, n)
	}
	granted := map[string]bool{}
	for i, b := range p.GetBindings() {
		cb, err := compileBinding(b)
		if err != nil {
			return nil, fieldErr(src, fmt.Sprintf("bindings[%d].%s", i, err.field), "%s", err.msg)
		}
		for _, r := range cb.roles {
			granted[r] = true
		}
		e.bindings = append(e.bindings, cb)
	}
	for i, r := range p.GetCallRules() {
		cr, err := compileCallRule(r, granted)
		if err != nil {
			return nil, fieldErr(src, fmt.Sprintf("call_rules[%d].%s", i, err.field), "%s", err.msg)
		}
		cr.index = i
		cr.name = e.ruleName("call_rules", i, cr.describe())
		e.calls = append(e.calls, cr)
	}
	for i, r := range p.GetServeRules() {
		sr, err := compileServeRule(r, granted)
		if err != nil {
			return nil, fieldErr(src, fmt.Sprintf("serve_rules[%d].%s", i, err.field), "%s", err.msg)
		}
		sr.name = e.ruleName("serve_rules", i, fmt.Sprintf("%s may serve %s", strings.Join(sr.roles, "|"), sr.capability.pattern))
		e.serves = append(e.serves, sr)
	}
	e.index()
	return e, nil
}

// ruleError is a compile error in one entry, before its index is known.
type ruleError struct{ field, msg string }

func rerr(field, format string, args ...any) *ruleError {
	return &ruleError{field: field, msg: fmt.Sprintf(format, args...)}
}

type binding struct {
	node, agent matcher
	uid         uint32
	hasUID      bool
	roles       []string
}

func compileBinding(b *meshnodev1.RoleBinding) (binding, *ruleError) {
	out := binding{node: matcher{kind: matchAll}, agent: matcher{kind: matchAll}}
	if b.GetNode() == "" && b.GetAgent() == "" && !(b.Uid != nil) {
		return out, rerr("node", "a binding must select by node, agent or uid")
	}
	var err error
	if b.GetNode() != "" {
		if out.node, err = compilePattern(b.GetNode()); err != nil {
			return out, rerr("node", "%v", err)
		}
	}
	if b.GetAgent() != "" {
		if out.agent, err = compilePattern(b.GetAgent()); err != nil {
			return out, rerr("agent", "%v", err)
		}
	}
	out.uid, out.hasUID = b.GetUid(), (b.Uid != nil)
	if len(b.GetRoles()) == 0 || len(b.GetRoles()) > maxRoles {
		return out, rerr("roles", "must grant 1-%d roles", maxRoles)
	}
	for j, r := range b.GetRoles() {
		if err := validRole(r); err != nil {
			return out, rerr(fmt.Sprintf("roles[%d]", j), "%v", err)
		}
	}
	out.roles = slices.Clone(b.GetRoles())
	return out, nil
}

type callRule struct {
	index            int
	name             string
	fromRole, toRole string
	fromAgent, toCap *matcher
	deny             bool
}

func (r *callRule) describe() string {
	from, to := r.fromRole, r.toRole
	if r.fromAgent != nil {
		from = r.fromAgent.pattern
	}
	if r.toCap != nil {
		to = r.toCap.pattern
	}
	action := ActionAllow
	if r.deny {
		action = ActionDeny
	}
	return fmt.Sprintf("%s -> %s: %s", from, to, action)
}

func compileCallRule(r *meshnodev1.CallRule, granted map[string]bool) (*callRule, *ruleError) {
	out := &callRule{}
	switch {
	case (r.GetFromRole() == "") == (r.GetFromAgent() == ""):
		return nil, rerr("from_role", "set exactly one of from_role and from_agent")
	case r.GetFromRole() != "":
		if err := validRole(r.GetFromRole()); err != nil {
			return nil, rerr("from_role", "%v", err)
		}
		if !granted[r.GetFromRole()] {
			return nil, rerr("from_role", "role %q is granted by no binding", r.GetFromRole())
		}
		out.fromRole = r.GetFromRole()
	default:
		m, err := compilePattern(r.GetFromAgent())
		if err != nil {
			return nil, rerr("from_agent", "%v", err)
		}
		out.fromAgent = &m
	}
	switch {
	case (r.GetToCapability() == "") == (r.GetToRole() == ""):
		return nil, rerr("to_capability", "set exactly one of to_capability and to_role")
	case r.GetToRole() != "":
		if err := validRole(r.GetToRole()); err != nil {
			return nil, rerr("to_role", "%v", err)
		}
		if !granted[r.GetToRole()] {
			return nil, rerr("to_role", "role %q is granted by no binding", r.GetToRole())
		}
		out.toRole = r.GetToRole()
	default:
		m, err := compilePattern(r.GetToCapability())
		if err != nil {
			return nil, rerr("to_capability", "%v", err)
		}
		out.toCap = &m
	}
	switch r.GetAction() {
	case ActionAllow:
	case ActionDeny:
		out.deny = true
	default:
		return nil, rerr("action", "must be %q or %q, got %q", ActionAllow, ActionDeny, r.GetAction())
	}
	return out, nil
}

type serveRule struct {
	name       string
	capability matcher
	roles      []string
}

func compileServeRule(r *meshnodev1.ServeRule, granted map[string]bool) (*serveRule, *ruleError) {
	m, err := compilePattern(r.GetCapability())
	if err != nil {
		return nil, rerr("capability", "%v", err)
	}
	if len(r.GetRoles()) == 0 || len(r.GetRoles()) > maxRoles {
		return nil, rerr("roles", "must name 1-%d roles", maxRoles)
	}
	for j, role := range r.GetRoles() {
		if err := validRole(role); err != nil {
			return nil, rerr(fmt.Sprintf("roles[%d]", j), "%v", err)
		}
		if !granted[role] {
			return nil, rerr(fmt.Sprintf("roles[%d]", j), "role %q is granted by no binding", role)
		}
	}
	return &serveRule{capability: m, roles: slices.Clone(r.GetRoles())}, nil
}
