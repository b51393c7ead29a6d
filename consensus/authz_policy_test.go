package consensus

import (
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func adminSetAuthz(sc *meshnodev1.SignedCommand, req *meshnodev1.SetAuthzPolicyRequest) *meshnodev1.Command {
	return &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodSetAuthzPolicy, Signature: sc,
		Request: &meshnodev1.AdminCommand_SetAuthzPolicy{SetAuthzPolicy: req}}}}
}

// The authorization policy is stored only from a policy operator's signed
// command, only when it validates, and its serve rules then judge every
// registration where it is applied.
func TestAuthzPolicyIsSignedValidatedAndEnforcedAtApply(t *testing.T) {
	ops := newTestOperators(t)
	st := testState(64)
	now := time.Unix(0, testNow)
	applyAs(st, 1, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}})
	rev := ops.record(t, "rev", operator.RoleReviewer)
	if r := applyAs(st, 2, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodPutOperator,
		Signature: ops.sign(t, "root", MethodPutOperator, &meshnodev1.PutOperatorRequest{Record: rev}, now),
		Request:   &meshnodev1.AdminCommand_PutOperator{PutOperator: &meshnodev1.PutOperatorRequest{Record: rev}}}}})[0]; r.GetStatus() != statusOK {
		t.Fatalf("put reviewer: %v", r)
	}
	pol := &meshnodev1.AuthzPolicy{Mode: "deny", Source: "rbac.yaml",
		Bindings:   []*meshnodev1.RoleBinding{{Agent: "root*", Roles: []string{"admin"}}},
		ServeRules: []*meshnodev1.ServeRule{{Capability: "admin.*", Roles: []string{"admin"}}, {Capability: "*", Roles: []string{"admin"}}}}
	req := &meshnodev1.SetAuthzPolicyRequest{Policy: pol}

	if r := applyAs(st, 10, testOrigin, adminSetAuthz(nil, req))[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_INVALID {
		t.Fatalf("unsigned: %v", r)
	}
	if r := applyAs(st, 11, testOrigin, adminSetAuthz(ops.sign(t, "rev", MethodSetAuthzPolicy, req, now), req))[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
		t.Fatalf("signed by a reviewer: %v", r)
	}
	bad := &meshnodev1.SetAuthzPolicyRequest{Policy: &meshnodev1.AuthzPolicy{Source: "rbac.yaml", Bindings: pol.Bindings,
		CallRules: []*meshnodev1.CallRule{{FromRole: "admin", ToCapability: "x", Action: "allow"}, {FromRole: "ghost", ToCapability: "x", Action: "allow"}}}}
	if r := applyAs(st, 12, testOrigin, adminSetAuthz(ops.sign(t, "root", MethodSetAuthzPolicy, bad, now), bad))[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_INVALID ||
		!strings.Contains(r.GetMessage(), "call_rules[1].from_role") {
		t.Fatalf("a rule naming a role no binding grants: %v", r)
	}
	if txn, _ := st.read(); storedAuthz(txn) != nil {
		t.Fatal("a refused policy was stored")
	}
	if r := applyAs(st, 13, testOrigin, adminSetAuthz(ops.sign(t, "root", MethodSetAuthzPolicy, req, now), req))[0]; r.GetStatus() != statusOK {
		t.Fatalf("signed by the admin: %v", r)
	}
	txn, _ := st.read()
	if rec := storedAuthz(txn); rec.GetModifyIndex() != 13 || rec.GetSignature().GetOperator() != "root" || rec.GetPolicy().GetMode() != "deny" {
		t.Fatalf("stored %v", rec)
	}

	register := func(index uint64, id, name, capability string, claimed ...string) *meshnodev1.CommandResult {
		return applyAs(st, index, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_RegisterAgent{RegisterAgent: &meshnodev1.RegisterAgentCommand{
			Agent: &meshnodev1.Agent{Id: id, Name: name, Node: testOrigin, Roles: claimed, Capabilities: []*meshnodev1.Capability{{Name: capability}}}}}})[0]
	}
	if r := register(20, testOrigin+"/intruder", "intruder", "admin.shutdown", "admin"); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED ||
		!strings.Contains(r.GetMessage(), "rbac.yaml: serve_rules[0] admin may serve admin.*") {
		t.Fatalf("an agent claiming a role no binding grants registers admin.shutdown: %v", r)
	}
	if r := register(21, testOrigin+"/root1", "root1", "admin.shutdown"); r.GetStatus() != statusOK {
		t.Fatalf("a bound admin agent: %v", r)
	}
}
