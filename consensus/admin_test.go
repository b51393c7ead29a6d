package consensus

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// testOperators is a trust bundle with a first admin, and the keys of the
// operators a test signs with.
type testOperators struct {
	bundle *meshnodev1.TrustBundle
	keys   map[string]ed25519.PrivateKey
}

func newTestOperators(t testing.TB) *testOperators {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	adminPub, adminKey, _ := ed25519.GenerateKey(rand.Reader)
	return &testOperators{
		bundle: &meshnodev1.TrustBundle{Roots: [][]byte{der}, FirstAdminName: "root", FirstAdminPublicKey: adminPub},
		keys:   map[string]ed25519.PrivateKey{"root": adminKey},
	}
}

// sign signs req for method as operator op with its key.
func (o *testOperators) sign(t testing.TB, op, method string, req proto.Message, now time.Time) *meshnodev1.SignedCommand {
	t.Helper()
	sc, err := operator.SignCommand(op, o.keys[op], ClusterID(o.bundle), method, req, now, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// record signs an operator record for name with roles, issued by root.
func (o *testOperators) record(t testing.TB, name string, roles ...operator.Role) *meshnodev1.SignedOperatorRecord {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	o.keys[name] = key
	rec := &meshnodev1.OperatorRecord{Name: name, PublicKey: pub, Issuer: "root", Version: 1}
	for _, r := range roles {
		rec.Roles = append(rec.Roles, string(r))
	}
	sr, err := operator.SignRecord("root", o.keys["root"], rec)
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

func setPolicy(capability, policy string) *meshnodev1.SetPolicyRequest {
	return &meshnodev1.SetPolicyRequest{Policy: &meshnodev1.RoutingPolicy{Capability: capability, Policy: policy}}
}

func adminSetPolicy(sc *meshnodev1.SignedCommand, req *meshnodev1.SetPolicyRequest) *meshnodev1.AdminCommand {
	return &meshnodev1.AdminCommand{Method: MethodSetPolicy, Signature: sc, Request: &meshnodev1.AdminCommand_SetPolicy{SetPolicy: req}}
}

// Every way an admin command can be wrong is refused by the state machine
// with its own message, from a client's origin and a server's alike, and
// changes nothing; only a valid one, once, takes effect.
func TestAdminCommandsAreVerifiedAtApply(t *testing.T) {
	ops := newTestOperators(t)
	now := time.Unix(0, testNow)
	other := newTestOperators(t)
	other.keys["root"] = ops.keys["root"] // same admin key, another cluster
	stranger := newTestOperators(t)
	ops.keys["ghost"] = stranger.keys["root"] // a key nobody recorded
	type row struct {
		name string
		cmd  func() *meshnodev1.AdminCommand
		want string
	}
	valid := func(op, capability string) *meshnodev1.AdminCommand {
		req := setPolicy(capability, "cost")
		return adminSetPolicy(ops.sign(t, op, MethodSetPolicy, req, now), req)
	}
	rows := []row{
		{"unsigned", func() *meshnodev1.AdminCommand {
			return adminSetPolicy(&meshnodev1.SignedCommand{}, setPolicy("a", "cost"))
		}, "needs an operator key"},
		{"wrong key", func() *meshnodev1.AdminCommand {
			req := setPolicy("a", "cost")
			sc, _ := operator.SignCommand("root", stranger.keys["root"], ClusterID(ops.bundle), MethodSetPolicy, req, now, time.Minute, nil)
			return adminSetPolicy(sc, req)
		}, "not signed by the key"},
		{"expired", func() *meshnodev1.AdminCommand {
			req := setPolicy("a", "cost")
			return adminSetPolicy(ops.sign(t, "root", MethodSetPolicy, req, now.Add(-10*time.Minute)), req)
		}, "expired"},
		{"wrong role", func() *meshnodev1.AdminCommand { return valid("viewer", "a") }, "needs \"policy\""},
		{"unknown operator", func() *meshnodev1.AdminCommand { return valid("ghost", "a") }, "no record"},
		{"other cluster", func() *meshnodev1.AdminCommand {
			req := setPolicy("a", "cost")
			return adminSetPolicy(other.sign(t, "root", MethodSetPolicy, req, now), req)
		}, "signed for cluster"},
		{"body changed after signing", func() *meshnodev1.AdminCommand {
			a := valid("root", "a")
			a.GetSetPolicy().Policy.Policy = "latency"
			return a
		}, "digest"},
		{"other method", func() *meshnodev1.AdminCommand {
			req := setPolicy("a", "cost")
			return adminSetPolicy(ops.sign(t, "root", MethodDeletePolicy, req, now), req)
		}, "signed for"},
	}
	for _, origin := range []string{testOrigin, "c1"} {
		st := testState(16)
		var idx uint64 = 1
		apply := func(c *meshnodev1.Command) *meshnodev1.CommandResult {
			idx++
			return applyAs(st, idx, origin, c)[0]
		}
		if r := applyAs(st, idx, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}})[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
			t.Fatalf("trust bundle: %v", r)
		}
		viewer := ops.record(t, "viewer", operator.RoleViewer)
		putOp := &meshnodev1.PutOperatorRequest{Record: viewer}
		if r := apply(&meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodPutOperator,
			Signature: ops.sign(t, "root", MethodPutOperator, putOp, now), Request: &meshnodev1.AdminCommand_PutOperator{PutOperator: putOp}}}}); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
			t.Fatalf("%s: add operator viewer: %v", origin, r)
		}
		for _, rw := range rows {
			r := apply(&meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: rw.cmd()}})
			if r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), rw.want) {
				t.Errorf("%s, %s: %v, want PERMISSION_DENIED saying %q", origin, rw.name, r, rw.want)
			}
		}
		txn, _ := st.read()
		if p := first[*meshnodev1.PolicyRecord](txn, tablePolicies, "a"); p != nil {
			t.Fatalf("%s: a refused command stored a policy: %v", origin, p)
		}
		ok := valid("root", "a")
		if r := apply(&meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: ok}}); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
			t.Fatalf("%s: valid: %v", origin, r)
		}
		// The same signed command again (a node replaying what it relayed).
		if r := apply(&meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: ok}}); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "already applied") {
			t.Errorf("%s: replayed: %v", origin, r)
		}
		// Raw policy writes are refused from every origin.
		if r := apply(&meshnodev1.Command{Op: &meshnodev1.Command_PutPolicy{PutPolicy: &meshnodev1.PutPolicyCommand{Policy: &meshnodev1.PolicyRecord{Key: "a", Policy: []byte("x")}}}}); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
			t.Errorf("%s: raw PutPolicy: %v", origin, r)
		}
		txn, _ = st.read()
		if p := first[*meshnodev1.PolicyRecord](txn, tablePolicies, "a"); p == nil {
			t.Errorf("%s: the valid command stored no policy", origin)
		}
	}
}

// The trust bundle is written once: a second one, from any origin, is
// refused, so a compromised leader cannot swap the first admin's key.
func TestTrustBundleIsWrittenOnce(t *testing.T) {
	st := testState(16)
	a, b := newTestOperators(t), newTestOperators(t)
	put := func(bundle *meshnodev1.TrustBundle) *meshnodev1.CommandResult {
		return applyAs(st, 2, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: bundle}}})[0]
	}
	if r := put(a.bundle); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatal(r)
	}
	if r := put(a.bundle); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("the same bundle again: %v", r)
	}
	if r := put(b.bundle); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
		t.Fatalf("another bundle: %v", r)
	}
}

// signedPolicy stores a policy through a real store as a signed admin
// command.
func signedPolicy(ctx context.Context, t testing.TB, s *Store, ops *testOperators, key string, policy []byte) (uint64, error) {
	t.Helper()
	p := &meshnodev1.RoutingPolicy{}
	if err := proto.Unmarshal(policy, p); err != nil {
		t.Fatal(err)
	}
	p.Capability = key
	req := &meshnodev1.SetPolicyRequest{Policy: p}
	return s.Admin(ctx, adminSetPolicy(ops.sign(t, "root", MethodSetPolicy, req, time.Now()), req))
}

// storeOps are the test operators of each store whose trust bundle a test
// wrote (a bundle is written once).
var storeOps sync.Map // *Store -> *testOperators

// opsOf returns the test operators of s, writing their trust bundle the
// first time.
func opsOf(ctx context.Context, t testing.TB, s *Store) *testOperators {
	t.Helper()
	v, loaded := storeOps.LoadOrStore(s, newTestOperators(t))
	ops := v.(*testOperators)
	if !loaded {
		if _, err := s.PutTrustBundle(ctx, ops.bundle); err != nil {
			t.Fatalf("PutTrustBundle: %v", err)
		}
	}
	return ops
}

// adminAs signs req for method as op and applies it through s.
func adminAs(ctx context.Context, t testing.TB, s *Store, op, method string, fill func(*meshnodev1.AdminCommand), req proto.Message) (uint64, error) {
	t.Helper()
	a := &meshnodev1.AdminCommand{Method: method, Signature: opsOf(ctx, t, s).sign(t, op, method, req, time.Now())}
	fill(a)
	return s.Admin(ctx, a)
}

// issueSigned records join token id (for node, with role) as issued by
// the first admin of s's test bundle.
func issueSigned(ctx context.Context, t testing.TB, s *Store, id, node string, role meshnodev1.JoinRole, rejoin bool) {
	t.Helper()
	req := &meshnodev1.CreateTokenRequest{NodeName: node, Role: role, Rejoin: rejoin, AnyName: node == ""}
	_, err := adminAs(ctx, t, s, "root", MethodCreateToken, func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_CreateToken{CreateToken: req}
		a.IssuedToken = issued(id, req, time.Now().Add(time.Hour))
	}, req)
	if err != nil {
		t.Fatalf("issue token %s: %v", id, err)
	}
}

// issued is the token record a minting server would send for req.
func issued(id string, req *meshnodev1.CreateTokenRequest, expires time.Time) *meshnodev1.IssuedToken {
	role := req.GetRole()
	if role == meshnodev1.JoinRole_JOIN_ROLE_UNSPECIFIED {
		role = meshnodev1.JoinRole_JOIN_ROLE_CLIENT
	}
	return &meshnodev1.IssuedToken{Id: id, NodeName: req.GetNodeName(), Role: role, Rejoin: req.GetRejoin(), ExpiresAt: timestamppb.New(expires)}
}

// issueCommand is the command that records any-name client token id as
// issued by ops' first admin at now.
func issueCommand(t testing.TB, ops *testOperators, id string, now time.Time) *meshnodev1.Command {
	t.Helper()
	req := &meshnodev1.CreateTokenRequest{AnyName: true}
	return &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodCreateToken,
		Signature: ops.sign(t, "root", MethodCreateToken, req, now), Request: &meshnodev1.AdminCommand_CreateToken{CreateToken: req},
		IssuedToken: issued(id, req, now.Add(time.Hour))}}}
}

// revokeSigned revokes through s as the first admin of a test bundle.
func revokeSigned(ctx context.Context, t testing.TB, s *Store, node string, serials []string, reason string) (uint64, error) {
	t.Helper()
	ops := opsOf(ctx, t, s)
	req := &meshnodev1.RevokeNodeRequest{NodeName: node, Serials: serials, Reason: reason}
	return s.Admin(ctx, &meshnodev1.AdminCommand{Method: MethodRevokeNode, Signature: ops.sign(t, "root", MethodRevokeNode, req, time.Now()),
		Request: &meshnodev1.AdminCommand_RevokeNode{RevokeNode: req}})
}

// revokeInState revokes node in a bare state as the first admin of a test
// bundle it writes.
func revokeInState(t testing.TB, st *state, index uint64, node string) *meshnodev1.CommandResult {
	t.Helper()
	ops := newTestOperators(t)
	applyAs(st, index, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}})
	req := &meshnodev1.RevokeNodeRequest{NodeName: node, Reason: "test"}
	return applyAs(st, index+1, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{
		Method: MethodRevokeNode, Signature: ops.sign(t, "root", MethodRevokeNode, req, time.Unix(0, testNow)), Request: &meshnodev1.AdminCommand_RevokeNode{RevokeNode: req}}}})[0]
}

// A review is applied only when signed by a reviewer, and records the
// verified signer and the signed command; a raw reviewed record is refused
// from every origin.
func TestReviewIsAnAdminCommand(t *testing.T) {
	ops := newTestOperators(t)
	now := time.Unix(0, testNow)
	st := testState(16)
	applyAs(st, 1, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}})
	blob, _ := proto.Marshal(&meshnodev1.Decision{Proposal: &meshnodev1.Proposal{Id: "p1", ProposerNode: "srv"}, Status: meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW})
	applyAs(st, 2, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: &meshnodev1.DecisionRecord{Id: "p1", Status: DecisionNeedsReview, Decision: blob}}}})
	raw, _ := proto.Marshal(&meshnodev1.Decision{Proposal: &meshnodev1.Proposal{Id: "p1"}, Status: meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED, Outcome: meshnodev1.Choice_CHOICE_APPROVE})
	if r := applyAs(st, 3, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: &meshnodev1.DecisionRecord{Id: "p1", Status: DecisionReviewed, Decision: raw}}}})[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
		t.Fatalf("a server's raw reviewed record: %v", r)
	}
	putOp := &meshnodev1.PutOperatorRequest{Record: ops.record(t, "pol", operator.RolePolicy)}
	applyAs(st, 4, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodPutOperator,
		Signature: ops.sign(t, "root", MethodPutOperator, putOp, now), Request: &meshnodev1.AdminCommand_PutOperator{PutOperator: putOp}}}})
	review := func(op string, idx uint64) *meshnodev1.CommandResult {
		req := &meshnodev1.ReviewRequest{Id: "p1", Outcome: meshnodev1.Choice_CHOICE_REJECT, Reason: "too much"}
		return applyAs(st, idx, "c1", &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodReview,
			Signature: ops.sign(t, op, MethodReview, req, now), Request: &meshnodev1.AdminCommand_Review{Review: req}}}})[0]
	}
	if r := review("pol", 5); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "reviewer") {
		t.Fatalf("review by a policy operator: %v", r)
	}
	if r := review("root", 6); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("review by the first admin: %v", r)
	}
	txn, _ := st.read()
	rec := first[*meshnodev1.DecisionRecord](txn, tableDecisions, "p1")
	d := &meshnodev1.Decision{}
	if err := proto.Unmarshal(rec.GetDecision(), d); err != nil || rec.GetStatus() != DecisionReviewed ||
		d.GetReview().GetOperator() != "root" || d.GetReview().GetSignature().GetOperator() != "root" || d.GetOutcome() != meshnodev1.Choice_CHOICE_REJECT {
		t.Fatalf("reviewed record %v: %v (%v)", rec.GetStatus(), d.GetReview(), err)
	}
	if r := review("root", 7); r.GetStatus() == meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("a second review: %v", r)
	}
}
