package node_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/authz"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// seedRBAC is the seed's example in deny mode: processing may call
// analysis but not admin; only bound roles may serve each family.
const seedRBAC = `
mode: deny
bindings:
  - agent: "ingest-*"
    roles: [processing]
  - agent: "analyst"
    roles: [analysis]
  - agent: "root"
    roles: [admin]
call_rules:
  - from_role: processing
    to_capability: "analysis.*"
    action: allow
  - from_role: processing
    to_capability: "admin.*"
    action: deny
serve_rules:
  - capability: "admin.*"
    roles: [admin]
  - capability: "analysis.*"
    roles: [analysis]
  - capability: "ingest.*"
    roles: [processing]
`

// setAuthzPolicy applies doc as a policy operator (the bootstrap admin)
// and waits until every node's replica holds it.
func setAuthzPolicy(t testing.TB, nodes []*testNode, doc string) {
	t.Helper()
	p, err := authz.DecodeYAML("rbac.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := meshnodev1.NewAuthzServiceClient(nodes[0].operatorConn(t, nodes[0].dir)).SetAuthzPolicy(ctx, &meshnodev1.SetAuthzPolicyRequest{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, n.name+" holds the policy", func() bool {
			got, err := meshnodev1.NewAuthzServiceClient(n.conn(t)).GetAuthzPolicy(ctx, &meshnodev1.GetAuthzPolicyRequest{})
			return err == nil && got.GetRecord().GetModifyIndex() == resp.GetIndex()
		})
	}
}

// The seed's example over real QUIC: processing on n2 calls analysis on
// n1; its call to admin is refused at its own node, naming the rule; the
// same call forged by a modified n2 (its real certificate, its own code,
// no caller-side check) is refused at n1; an agent without the admin role
// cannot register an admin capability, whatever roles it claims.
func TestAuthorizationAcrossNodes(t *testing.T) {
	nodes := startCluster(t)
	setAuthzPolicy(t, nodes, seedRBAC)
	var adminRan atomic.Int32
	serveAgent(t, nodes[0], "analyst", map[string]agent.HandlerFunc{"analysis.summarise": echoFrom("n1")})
	serveAgent(t, nodes[0], "root", map[string]agent.HandlerFunc{"admin.shutdown": func(context.Context, *agent.Request) (*agent.Response, error) {
		adminRan.Add(1)
		return &agent.Response{}, nil
	}})
	ingest, _ := serveAgent(t, nodes[1], "ingest-a", map[string]agent.HandlerFunc{"ingest.run": echoFrom("n2")})
	for _, c := range []string{"analysis.summarise", "admin.shutdown", "ingest.run"} {
		waitFor(t, 20*time.Second, "n2 sees "+c, func() bool { return len(readyAgents(t, nodes[1], c)) == 1 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if res, err := ingest.Call(ctx, "analysis.summarise", []byte("hi")); err != nil || string(res.Payload) != "n1:hi" {
		t.Fatalf("processing -> analysis: %v %v", res, err)
	}
	_, err := ingest.Call(ctx, "admin.shutdown", nil)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "rbac.yaml: call_rules[1] processing -> admin.*: deny") ||
		strings.Contains(err.Error(), "the callee's") {
		t.Fatalf("processing -> admin: %v, want PermissionDenied at the caller's node naming the rule", err)
	}
	// A process naming no agent has no roles: mode deny refuses it.
	inv := meshnodev1.NewInvokeServiceClient(nodes[1].conn(t))
	if _, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: "analysis.summarise"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("anonymous call in mode deny: %v", err)
	}

	// A modified n2 skips its own check and forwards the call itself.
	creds, err := pki.LoadCredentials(nodes[1].dir)
	if err != nil {
		t.Fatal(err)
	}
	ep := attackerEndpoint(t, creds)
	_, err = forgeForwardCap(ctx, ep, nodes[0].addr, "n1/root", "admin.shutdown", "n2/ingest-a")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "refused at node n1, the callee's") || !strings.Contains(err.Error(), "call_rules[1]") {
		t.Fatalf("forged processing -> admin: %v, want PermissionDenied at n1 naming the rule", err)
	}
	// Claiming n1's analysis agent as the caller is refused before policy.
	_, err = forgeForwardCap(ctx, ep, nodes[0].addr, "n1/root", "admin.shutdown", "n1/analyst")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "not on node n2") {
		t.Fatalf("forged caller n1/analyst from n2: %v", err)
	}
	if n := adminRan.Load(); n != 0 {
		t.Fatalf("the admin handler ran %d times", n)
	}

	// Serve rules: no admin binding, whatever the agent claims.
	intruder := &agent.Agent{Name: "intruder", Socket: nodes[0].socket, Roles: []string{"admin"}}
	intruder.Handle(agent.Capability{Name: "admin.shutdown"}, echoFrom("n1"))
	err = intruder.Register(ctx)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "serve_rules[0] admin may serve admin.*") {
		t.Fatalf("intruder registering admin.shutdown: %v", err)
	}
	intruder.Close()

	// The registration says which roles the bindings granted: not the
	// ones claimed.
	reg, err := meshnodev1.NewRegistryServiceClient(nodes[1].conn(t)).Register(ctx, &meshnodev1.RegisterRequest{Name: "ingest-b", Roles: []string{"admin"},
		Capabilities: []*meshnodev1.Capability{{Name: "ingest.run"}}})
	if err != nil || strings.Join(reg.GetGrantedRoles(), ",") != "processing" {
		t.Fatalf("register ingest-b claiming admin: granted %v, %v; want processing only", reg.GetGrantedRoles(), err)
	}

	check := meshnodev1.NewAuthzServiceClient(nodes[2].conn(t))
	for _, tc := range []struct {
		from, capability string
		allowed          bool
		rule             string
	}{
		{"n2/ingest-a", "analysis.summarise", true, "call_rules[0]"},
		{"n2/ingest-a", "admin.shutdown", false, "call_rules[1]"},
		{"n1/analyst", "admin.shutdown", false, "mode deny"},
	} {
		r, err := check.CheckAuthz(ctx, &meshnodev1.CheckAuthzRequest{FromAgent: tc.from, Capability: tc.capability})
		if err != nil || r.GetAllowed() != tc.allowed || !strings.Contains(r.GetRule(), tc.rule) {
			t.Errorf("check %s -> %s: %v %v, want %v by %s", tc.from, tc.capability, r, err, tc.allowed, tc.rule)
		}
	}
}
