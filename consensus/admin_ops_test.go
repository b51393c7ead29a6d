package consensus

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// putOperatorAs signs rec as issuer and applies it as a PutOperator admin
// command in st at index.
func putOperatorAs(t *testing.T, st *state, ops *testOperators, index uint64, issuer string, rec *meshnodev1.OperatorRecord) *meshnodev1.CommandResult {
	t.Helper()
	sr, err := operator.SignRecord(issuer, ops.keys[issuer], rec)
	if err != nil {
		t.Fatal(err)
	}
	req := &meshnodev1.PutOperatorRequest{Record: sr}
	return applyAs(st, index, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodPutOperator,
		Signature: ops.sign(t, issuer, MethodPutOperator, req, time.Unix(0, testNow)), Request: &meshnodev1.AdminCommand_PutOperator{PutOperator: req}}}})[0]
}

// The last valid admin cannot be removed or lose the admin role: the
// cluster would have no one to add operators, issue tokens or revoke nodes.
func TestLastAdminCannotBeRemoved(t *testing.T) {
	ops := newTestOperators(t)
	st := testState(16)
	applyAs(st, 1, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}})
	expired := testNow - int64(time.Second)
	rootRec := func(version uint64, notAfter int64, roles ...string) *meshnodev1.OperatorRecord {
		return &meshnodev1.OperatorRecord{Name: "root", PublicKey: ops.bundle.GetFirstAdminPublicKey(), Roles: roles, Issuer: "root", Version: version, NotAfterUnixNano: notAfter}
	}
	if r := putOperatorAs(t, st, ops, 2, "root", rootRec(1, expired, "admin")); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "last valid admin") {
		t.Fatalf("the only admin removing itself: %v", r)
	}
	if r := putOperatorAs(t, st, ops, 3, "root", rootRec(1, 0, "viewer")); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "last valid admin") {
		t.Fatalf("the only admin dropping the admin role: %v", r)
	}
	alice := ops.record(t, "alice", operator.RoleAdmin)
	aliceRec, _ := operator.OpenRecord(alice)
	if r := putOperatorAs(t, st, ops, 4, "root", aliceRec); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("adding a second admin: %v", r)
	}
	// Every chain ends at the first admin: alice's authority is root's, so
	// root dropping the admin role would leave no valid admin at all.
	if r := putOperatorAs(t, st, ops, 5, "root", rootRec(1, 0, "viewer")); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "last valid admin") {
		t.Fatalf("the first admin dropping the admin role that alice's record rests on: %v", r)
	}
	aliceRec.Version, aliceRec.NotAfterUnixNano = 2, expired
	if r := putOperatorAs(t, st, ops, 6, "root", aliceRec); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("removing alice beside root: %v", r)
	}
	txn, _ := st.read()
	if admins := operator.Admins(ops.bundle, operatorRecords(txn), time.Unix(0, testNow)); len(admins) != 1 || admins[0] != "root" {
		t.Fatalf("admins = %v, want [root]", admins)
	}
}

// A revoked token admits no one, and a minted token whose terms differ
// from the signed request is not recorded.
func TestIssuedTokensAreJudgedAgainstTheSignedRequest(t *testing.T) {
	s, ctx := singleStore(t)
	issueSigned(ctx, t, s, "tok-a", "n5", meshnodev1.JoinRole_JOIN_ROLE_CLIENT, false)
	rev := &meshnodev1.RevokeTokenRequest{Id: "tok-a", Reason: "posted in chat"}
	if _, err := adminAs(ctx, t, s, "root", MethodRevokeToken, func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_RevokeToken{RevokeToken: rev}
	}, rev); err != nil {
		t.Fatalf("revoke token: %v", err)
	}
	_, err := s.UseToken(ctx, TokenUse{ID: "tok-a", Expires: time.Now().Add(time.Hour), Node: "n5"})
	wantRefused(t, "a revoked token", err, ErrPermissionDenied, meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED)
	if !strings.Contains(err.Error(), "revoked by root") {
		t.Fatalf("revoked token refusal does not say who revoked it: %v", err)
	}

	issueSigned(ctx, t, s, "tok-b", "n6", meshnodev1.JoinRole_JOIN_ROLE_CLIENT, false)
	_, err = s.UseToken(ctx, TokenUse{ID: "tok-b", Expires: time.Now().Add(time.Hour), Node: "n7"})
	wantRefused(t, "a bound token under another name", err, ErrPermissionDenied, meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED)
	_, err = s.UseToken(ctx, TokenUse{ID: "tok-b", Expires: time.Now().Add(time.Hour), Node: "n6", Server: true})
	wantRefused(t, "a client token admitting a server", err, ErrPermissionDenied, meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED)

	// A server that widens the request: a server token for a client
	// request, or a longer life than asked.
	req := &meshnodev1.CreateTokenRequest{NodeName: "n8", Ttl: durationpb.New(10 * time.Minute)}
	for name, tok := range map[string]*meshnodev1.IssuedToken{
		"role":   {Id: "tok-c", NodeName: "n8", Role: meshnodev1.JoinRole_JOIN_ROLE_SERVER, ExpiresAt: issued("", req, time.Now().Add(5*time.Minute)).GetExpiresAt()},
		"expiry": issued("tok-d", req, time.Now().Add(2*time.Hour)),
		"name":   issued("tok-e", &meshnodev1.CreateTokenRequest{NodeName: "n9"}, time.Now().Add(time.Minute)),
	} {
		_, err := adminAs(ctx, t, s, "root", MethodCreateToken, func(a *meshnodev1.AdminCommand) {
			a.Request = &meshnodev1.AdminCommand_CreateToken{CreateToken: req}
			a.IssuedToken = tok
		}, req)
		wantRefused(t, "a minted token that differs in "+name, err, ErrPermissionDenied, meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED)
	}
	toks, _, err := s.IssuedTokens(context.Background(), ReadOptions{})
	if err != nil || len(toks) != 2 {
		t.Fatalf("issued tokens: %v, %v; want tok-a and tok-b only", toks, err)
	}
}
