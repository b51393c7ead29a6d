package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/agentmesh/meshnode/internal/opsign"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// An agent process on a server — any process that can open the socket but
// holds no operator key — cannot mint a token, revoke a node or set policy;
// the operator CLI can. A signed command captured by the client node that
// relays it, and sent again, is applied once.
func TestAgentsAreNotOperators(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.startAll()
	n1, n3 := c.nodes[0], c.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	agentConn := n1.grpcConn() // the server's socket, no operator key
	attempts := map[string]func() error{
		"mint a server token": func() error {
			_, err := meshnodev1.NewPKIServiceClient(agentConn).CreateToken(ctx, &meshnodev1.CreateTokenRequest{Role: meshnodev1.JoinRole_JOIN_ROLE_SERVER, NodeName: "evil", Ttl: durationpb.New(time.Hour)})
			return err
		},
		"revoke a node": func() error {
			_, err := meshnodev1.NewPKIServiceClient(agentConn).RevokeNode(ctx, &meshnodev1.RevokeNodeRequest{NodeName: c.nodes[1].name, Reason: "agent"})
			return err
		},
		"set policy": func() error {
			_, err := meshnodev1.NewPolicyServiceClient(agentConn).SetPolicy(ctx, &meshnodev1.SetPolicyRequest{Policy: &meshnodev1.RoutingPolicy{Capability: "e2e.op", Policy: "cost"}})
			return err
		},
		"review a decision": func() error {
			_, err := meshnodev1.NewQuorumServiceClient(agentConn).Review(ctx, &meshnodev1.ReviewRequest{Id: "any", Outcome: meshnodev1.Choice_CHOICE_APPROVE, Reason: "mine"})
			return err
		},
		"clear a flag": func() error {
			_, err := meshnodev1.NewQuorumServiceClient(agentConn).ClearFlag(ctx, &meshnodev1.ClearFlagRequest{AgentId: c.nodes[1].name + "/voter", Reason: "mine"})
			return err
		},
		"remove a node": func() error {
			_, err := meshnodev1.NewPKIServiceClient(agentConn).RemoveNode(ctx, &meshnodev1.RemoveNodeRequest{NodeName: n3.name})
			return err
		},
		"remove an agent": func() error {
			_, err := meshnodev1.NewRegistryServiceClient(agentConn).RemoveAgent(ctx, &meshnodev1.RemoveAgentRequest{Id: n3.name + "/anything"})
			return err
		},
		"revoke a token": func() error {
			_, err := meshnodev1.NewPKIServiceClient(agentConn).RevokeToken(ctx, &meshnodev1.RevokeTokenRequest{Id: "any"})
			return err
		},
		"add itself as an operator": func() error {
			_, err := meshnodev1.NewOperatorServiceClient(agentConn).PutOperator(ctx, &meshnodev1.PutOperatorRequest{Record: &meshnodev1.SignedOperatorRecord{}})
			return err
		},
	}
	for what, try := range attempts {
		if err := try(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "operator") {
			t.Errorf("an agent process on %s tried to %s: %v, want PermissionDenied asking for an operator key", n1.name, what, err)
		}
	}
	if v, err := n1.members(ctx); err != nil || !v.alive[c.nodes[1].name] {
		t.Fatalf("after the refused revocation: %v %v", v, err)
	}
	// The operator CLI (the first admin's key, in n1's data dir) can.
	if out, errOut, code := n1.cli("policy", "set", "e2e.op", "--policy", "cost"); code != 0 {
		t.Fatalf("operator CLI: policy set: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code := n1.cli("token", "create", "--name", "later", "--json")
	if code != 0 || out == "" {
		t.Fatalf("operator CLI: token create: exit %d: %s%s", code, out, errOut)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" {
		t.Fatalf("token create --json: %q: %v", out, err)
	}
	if out, errOut, code := n1.cli("token", "revoke", created.ID, "--reason", "e2e"); code != 0 {
		t.Fatalf("operator CLI: token revoke: exit %d: %s%s", code, out, errOut)
	}
	if out, errOut, code := n1.cli("token", "list"); code != 0 || !strings.Contains(out, created.ID) || !strings.Contains(out, "revoked by admin") {
		t.Fatalf("operator CLI: token list after revoke: exit %d: %s%s", code, out, errOut)
	}
	if out, errOut, code := n1.cli("operator", "whoami"); code != 0 || !strings.Contains(out, "operator admin,") {
		t.Fatalf("operator CLI: whoami: exit %d: %s%s", code, out, errOut)
	}
	// A proposal no one votes on escalates; the operator CLI reviews it and
	// the review verifies against the trust bundle.
	// The default policy needs 4 voters on distinct hosts: the test's kind
	// gets a policy of its own, set by the operator.
	if out, errOut, code := n1.cli("quorum", "policy", "set", "demo", "--rule", "k-of-n", "--k", "2", "--min-voters", "2"); code != 0 {
		t.Fatalf("operator CLI: quorum policy set: exit %d: %s%s", code, out, errOut)
	}
	c.nodes[1].serveAgent("yes", "e2e.vote", "--vote")
	n3.serveAgent("silent", "e2e.vote", "--abstain")
	out, errOut, code = n1.cli("quorum", "propose", "--id", "e2e-review", "--kind", "demo", "--data", "{}",
		"--agents", c.nodes[1].name+"/yes,"+n3.name+"/silent", "--rule", "k-of-n", "--k", "2", "--on-no-quorum", "escalate", "--deadline", "2s")
	if code != 0 || !strings.Contains(strings.ToLower(out), "review") {
		t.Fatalf("operator CLI: an escalating proposal: exit %d: %s%s", code, out, errOut)
	}
	if out, errOut, code := n1.cli("quorum", "review", "e2e-review", "--approve", "--reason", "checked by hand"); code != 0 {
		t.Fatalf("operator CLI: quorum review: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = n1.cli("quorum", "verify", "e2e-review", "--trust", operator.TrustBundlePath(n1.dir))
	if code != 0 || !strings.Contains(out, "by operator admin") || !strings.Contains(out, "review signature verifies") {
		t.Fatalf("operator CLI: quorum verify of a reviewed decision: exit %d: %s%s", code, out, errOut)
	}
	// The reviewed decision, exported, verifies with no node at all.
	bundle := filepath.Join(t.TempDir(), "e2e-review.bundle")
	if out, errOut, code := n1.cli("quorum", "export", "e2e-review", "--out", bundle); code != 0 {
		t.Fatalf("operator CLI: quorum export: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, nil, "quorum", "verify", "--bundle", bundle, "--trust", operator.TrustBundlePath(n1.dir), "--socket", "/nonexistent/meshnode.sock")
	if code != 0 || !strings.Contains(out, "reviewed: approve by operator admin") {
		t.Fatalf("offline verify of the exported bundle: exit %d: %s%s", code, out, errOut)
	}
	// Against another cluster's trust bundle (a CA and first admin made
	// offline with the same trust domain), it does not.
	ca := filepath.Join(t.TempDir(), "ca")
	for _, args := range [][]string{{"pki", "init", "--dir", ca}, {"operator", "init", "--dir", ca}} {
		if out, errOut, code := runCLI(t, nil, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s%s", args, code, out, errOut)
		}
	}
	out, errOut, code = runCLI(t, nil, "quorum", "verify", "--bundle", bundle, "--trust", filepath.Join(ca, operator.OfflineBundleFile))
	if code == 0 || !strings.Contains(errOut, "does NOT verify") {
		t.Fatalf("offline verify against another cluster's trust bundle: exit %d: %s%s", code, out, errOut)
	}

	// Operators retire agents and nodes; a Raft server is not removed
	// behind autopilot's back.
	if out, errOut, code := n1.cli("agents", "remove", n3.name+"/silent"); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("operator CLI: agents remove: exit %d: %s%s", code, out, errOut)
	}
	if out, errOut, code := n1.cli("node", "remove", c.nodes[1].name); code == 0 || !strings.Contains(errOut, "Raft server") {
		t.Fatalf("operator CLI: node remove of a server: exit %d: %s%s", code, out, errOut)
	}

	// A signed command, captured and relayed twice by the client node n3.
	key, err := operator.ReadKeyFile(operator.BootstrapKeyPath(n1.dir))
	if err != nil {
		t.Fatal(err)
	}
	req := &meshnodev1.SetPolicyRequest{Policy: &meshnodev1.RoutingPolicy{Capability: "e2e.replay", Policy: "latency"}}
	signed, err := opsign.Sign(ctx, n3.grpcConn(), key, operator.FirstAdmin, "/meshnode.v1.PolicyService/SetPolicy", req)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := metadata.FromOutgoingContext(signed)
	send := func() error {
		_, err := meshnodev1.NewPolicyServiceClient(n3.grpcConn()).SetPolicy(metadata.NewOutgoingContext(ctx, md), req, grpc.WaitForReady(true))
		return err
	}
	if err := send(); err != nil {
		t.Fatalf("signed command through the client node: %v", err)
	}
	if err := send(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "already applied") {
		t.Fatalf("the same signed command again: %v, want PermissionDenied (nonce seen)", err)
	}
}
