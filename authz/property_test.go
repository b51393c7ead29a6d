package authz

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// refAllowed is the reference evaluator: the rules as the documentation
// states them, written the slow obvious way (regexps, no compilation).
func refAllowed(p *meshnodev1.AuthzPolicy, caller, capability, callee string) (bool, int) {
	match := func(pat, s string) bool {
		re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pat)) + "$"
		return regexp.MustCompile(re).MatchString(s)
	}
	roles := func(id string) []string {
		node, name, _ := strings.Cut(id, "/")
		var out []string
		for _, b := range p.GetBindings() {
			if (b.GetNode() == "" || match(b.GetNode(), node)) && (b.GetAgent() == "" || match(b.GetAgent(), name)) {
				out = append(out, b.GetRoles()...)
			}
		}
		return out
	}
	allowed, denied := -1, -1
	for i, r := range p.GetCallRules() {
		from := (r.GetFromRole() != "" && slices.Contains(roles(caller), r.GetFromRole())) || (r.GetFromAgent() != "" && match(r.GetFromAgent(), caller))
		to := (r.GetToCapability() != "" && match(r.GetToCapability(), capability)) || (r.GetToRole() != "" && slices.Contains(roles(callee), r.GetToRole()))
		if from && to {
			if r.GetAction() == ActionDeny && denied < 0 {
				denied = i
			} else if r.GetAction() == ActionAllow && allowed < 0 {
				allowed = i
			}
		}
	}
	switch {
	case denied >= 0:
		return false, denied
	case allowed >= 0:
		return true, allowed
	}
	return p.GetMode() != ModeDeny, -1
}

// The engine agrees with the reference on random policies and calls.
func TestEngineAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	roles := []string{"r1", "r2", "r3"}
	pats := []string{"*", "a*", "a.b", "a.*", "*.c", "?.?", "b*"}
	for iter := 0; iter < 5000; iter++ {
		p := &meshnodev1.AuthzPolicy{Mode: pick("allow", "deny")}
		for _, r := range roles {
			p.Bindings = append(p.Bindings, &meshnodev1.RoleBinding{Node: pick("", "n1", "n*"), Agent: pick("a*", "b", "*"), Roles: []string{r}})
		}
		for range rng.IntN(10) {
			r := &meshnodev1.CallRule{Action: pick("allow", "deny")}
			if rng.IntN(2) == 0 {
				r.FromRole = pick(roles...)
			} else {
				r.FromAgent = pick("n1/*", "*/a*", "n2/b")
			}
			if rng.IntN(2) == 0 {
				r.ToCapability = pick(pats...)
			} else {
				r.ToRole = pick(roles...)
			}
			p.CallRules = append(p.CallRules, r)
		}
		e, err := Compile(p, 1)
		if err != nil {
			t.Fatal(err)
		}
		caller := pick("n1", "n2") + "/" + pick("a", "ab", "b")
		callee := pick("n1", "n2") + "/" + pick("a", "ab", "b")
		capability := pick("a.b", "a.c", "b.c", "x", "ab")
		d := e.Call(Subject{ID: caller}, capability, &Subject{ID: callee})
		want, rule := refAllowed(p, caller, capability, callee)
		wantRule := "mode "
		if rule >= 0 {
			wantRule = fmt.Sprintf("call_rules[%d] ", rule)
		}
		if d.Allowed != want || !strings.Contains(d.Rule, wantRule) {
			t.Fatalf("policy %v: %s -> %s (%s): engine %+v, reference %v by %q", fmt.Sprint(p), caller, capability, callee, d, want, wantRule)
		}
	}
}
