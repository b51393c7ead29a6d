package authz

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func seedEngine(t testing.TB) *Engine {
	t.Helper()
	p, err := DecodeYAML("rbac.yaml", []byte(seedPolicy))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Compile(p, 7)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSeedExampleCalls(t *testing.T) {
	e := seedEngine(t)
	analyst := &Subject{ID: "n2/analyst"}
	admin := &Subject{ID: "ops/root"}
	for _, tc := range []struct {
		name       string
		caller     Subject
		capability string
		callee     *Subject
		allowed    bool
		rule       string // a substring of the deciding rule
	}{
		{"processing -> analysis capability", Subject{ID: "n1/ingest-a"}, "analysis.summarise", nil, true, "call_rules[1]"},
		{"processing -> analysis callee role", Subject{ID: "n1/ingest-a"}, "summarise", analyst, true, "call_rules[0] processing -> analysis: allow"},
		{"processing -> admin capability", Subject{ID: "n1/ingest-a"}, "admin.shutdown", nil, false, "rbac.yaml: call_rules[2] processing -> admin.*: deny"},
		{"processing -> admin callee role", Subject{ID: "n1/ingest-a"}, "summarise", admin, false, "call_rules[3]"},
		{"deny wins over an earlier allow", Subject{ID: "n1/ingest-legacy"}, "analysis.slow", nil, false, "call_rules[4]"},
		{"deny by callee role wins over allow by capability", Subject{ID: "n1/ingest-a"}, "analysis.x", &Subject{ID: "ops/analyst"}, false, "call_rules[3]"},
		{"analysis has no rule: mode deny", Subject{ID: "n2/analyst"}, "analysis.summarise", nil, false, "mode deny"},
		{"a process naming no agent: mode deny", Subject{}, "analysis.summarise", nil, false, "mode deny"},
		{"uid binding matches the owner", Subject{ID: "n3/shell", UID: 1000, HasUID: true}, "analysis.x", nil, true, "call_rules[1]"},
		{"uid binding needs the uid", Subject{ID: "n3/shell", UID: 1001, HasUID: true}, "analysis.x", nil, false, "mode deny"},
		{"uid binding needs a recorded uid", Subject{ID: "n3/shell"}, "analysis.x", nil, false, "mode deny"},
		{"patterns anchor at both ends", Subject{ID: "n1/x-ingest-a"}, "analysis.x", nil, false, "mode deny"},
	} {
		d := e.Call(tc.caller, tc.capability, tc.callee)
		if d.Allowed != tc.allowed || !strings.Contains(d.Rule, tc.rule) {
			t.Errorf("%s: %+v, want allowed=%v by %q", tc.name, d, tc.allowed, tc.rule)
		}
	}
}

func TestModeAllowIsTheDefault(t *testing.T) {
	e, err := Compile(nil, 0)
	if err != nil || !e.Empty() || e.Mode() != ModeAllow {
		t.Fatalf("nil policy: %v %v", e, err)
	}
	if d := e.Call(Subject{ID: "n1/a"}, "anything", nil); !d.Allowed {
		t.Fatalf("%+v", d)
	}
	p := &meshnodev1.AuthzPolicy{Bindings: []*meshnodev1.RoleBinding{{Agent: "x", Roles: []string{"r"}}},
		CallRules: []*meshnodev1.CallRule{{FromRole: "r", ToCapability: "pay.*", Action: "deny"}}}
	e, err = Compile(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Call(Subject{ID: "n1/x"}, "pay.approve", nil); d.Allowed {
		t.Fatalf("deny rule in mode allow: %+v", d)
	}
	if d := e.Call(Subject{ID: "n1/y"}, "pay.approve", nil); !d.Allowed || !strings.Contains(d.Rule, "mode allow") {
		t.Fatalf("no rule in mode allow: %+v", d)
	}
}

func TestServeRules(t *testing.T) {
	e := seedEngine(t)
	for _, tc := range []struct {
		agent      Subject
		capability string
		allowed    bool
		rule       string
	}{
		{Subject{ID: "ops/root"}, "admin.shutdown", true, "serve_rules[0]"},
		{Subject{ID: "n1/ingest-a"}, "admin.shutdown", false, "serve_rules[0] admin may serve admin.*"},
		{Subject{ID: "n2/analyst"}, "analysis.summarise", true, "serve_rules[1]"},
		{Subject{ID: "n2/analyst"}, "payment.approve", false, "mode deny: no serve rule covers payment.approve"},
	} {
		if d := e.Serve(tc.agent, tc.capability); d.Allowed != tc.allowed || !strings.Contains(d.Rule, tc.rule) {
			t.Errorf("%s serves %s: %+v, want %v by %q", tc.agent.ID, tc.capability, d, tc.allowed, tc.rule)
		}
	}
}

// Roles come from bindings only; ids are "<node>/<name>" and the node and
// name patterns are matched separately.
func TestRolesFromBindingsOnly(t *testing.T) {
	e := seedEngine(t)
	for id, want := range map[string]string{"ops/root": "admin", "ops/analyst": "admin,analysis", "n1/ingest-a": "processing", "n1/root": "", "ingest-a": ""} {
		if got := strings.Join(e.Roles(Subject{ID: id}), ","); got != want {
			t.Errorf("roles of %s: %q, want %q", id, got, want)
		}
	}
}

func TestBadPoliciesNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"mode: maybe\n", `rbac.yaml:1: mode: must be "allow" or "deny"`},
		{"mode: deny\ncall_rule: []\n", "rbac.yaml:2: call_rule: unknown key"},
		{"bindings:\n  - agent: a\n    roles: [r]\ncall_rules:\n  - from_role: r\n    to_capability: \"a b\"\n    action: allow\n", "rbac.yaml:6: call_rules[0].to_capability: pattern \"a b\""},
		{"bindings:\n  - agent: a\n    roles: [r]\ncall_rules:\n  - from_role: ghost\n    to_capability: x\n    action: allow\n", `rbac.yaml:5: call_rules[0].from_role: role "ghost" is granted by no binding`},
		{"bindings:\n  - roles: [r]\n", "rbac.yaml:2: bindings[0].node: a binding must select by node, agent or uid"},
		{"bindings:\n  - agent: a\n    roles: [r]\ncall_rules:\n  - from_role: r\n    to_capability: x\n    action: permit\n", "rbac.yaml:7: call_rules[0].action"},
		{"bindings:\n  - agent: a\n    roles: [r]\ncall_rules:\n  - from_role: r\n    from_agent: x\n    to_capability: x\n    action: allow\n", "call_rules[0].from_role: set exactly one"},
		{"bindings:\n  - agent: a\n    roles: [r]\nserve_rules:\n  - capability: x\n    roles: [r, nobody]\n", `rbac.yaml:6: serve_rules[0].roles[1]: role "nobody"`},
	} {
		_, err := DecodeYAML("rbac.yaml", []byte(tc.doc))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	p, err := DecodeYAML("rbac.yaml", []byte(seedPolicy))
	if err != nil {
		t.Fatal(err)
	}
	out, err := EncodeYAML(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := DecodeYAML("rbac.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(q.GetCallRules()) != 5 || q.GetBindings()[3].GetUid() != 1000 || q.GetMode() != ModeDeny {
		t.Fatalf("round trip lost data:\n%s", out)
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "abc", true}, {"a*c", "abc", true}, {"a*c", "abcd", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"*.x.*", "a.x.b", true}, {"n1/*", "n1/a/b", true},
		{"*a*a*a", "aaaa", true}, {"*a*a*a", "aab", false}, {"abc", "abc", true}, {"abc", "ab", false},
	} {
		m, err := compilePattern(tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.match(tc.s); got != tc.want || globMatch(tc.p, tc.s) != tc.want {
			t.Errorf("%q ~ %q = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

// BenchmarkEngineCall: one decision with n call rules, the deciding one
// last (the worst case for an allow); the others name another role (the
// index skips them) or the caller's own (every one is tried).
func BenchmarkEngineCall(b *testing.B) {
	for _, tc := range []struct {
		n     int
		other string // the from role of the rules that do not decide
	}{{10, "z"}, {1000, "z"}, {1000, "p"}} {
		b.Run(fmt.Sprintf("rules=%d/others-from=%s", tc.n, tc.other), func(b *testing.B) {
			p := &meshnodev1.AuthzPolicy{Mode: ModeDeny, Bindings: []*meshnodev1.RoleBinding{{Agent: "caller", Roles: []string{"p"}}, {Node: "zz", Roles: []string{"z"}}}}
			for i := range tc.n - 1 {
				p.CallRules = append(p.CallRules, &meshnodev1.CallRule{FromRole: tc.other, ToCapability: fmt.Sprintf("svc%d.*", i), Action: ActionAllow})
			}
			p.CallRules = append(p.CallRules, &meshnodev1.CallRule{FromRole: "p", ToCapability: "bench.*", Action: ActionAllow})
			e, err := Compile(p, 1)
			if err != nil {
				b.Fatal(err)
			}
			caller, callee := Subject{ID: "n1/caller"}, Subject{ID: "n2/echo"}
			b.ReportAllocs()
			for b.Loop() {
				if !e.Call(caller, "bench.remote", &callee).Allowed {
					b.Fatal("denied")
				}
			}
		})
	}
}
