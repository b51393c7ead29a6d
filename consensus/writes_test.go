package consensus

import (
	"context"
	"errors"
	"google.golang.org/protobuf/proto"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// singleStore is a one-server cluster: the typed writes commit through real
// Raft, the same path as in a cluster.
func singleStore(t *testing.T) (*Store, context.Context) {
	t.Helper()
	c := newCluster(t, 1, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c.nodes[0].store, ctx
}

func mustPolicy(t *testing.T, b []byte) *meshnodev1.RoutingPolicy {
	t.Helper()
	p := &meshnodev1.RoutingPolicy{}
	if err := proto.Unmarshal(b, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantRefused(t *testing.T, what string, err error, sentinel error, st meshnodev1.CommandStatus) {
	t.Helper()
	var re *RefusedError
	if !errors.Is(err, sentinel) || !errors.As(err, &re) || re.Status != st || re.Message == "" {
		t.Fatalf("%s: error %v (%T), want a *RefusedError with status %s that is %v", what, err, err, st, sentinel)
	}
}

func TestTypedAgentWrites(t *testing.T) {
	s, ctx := singleStore(t)
	if _, err := s.RegisterNode(ctx, &meshnodev1.NodeRecord{Name: "n1", Address: "127.0.0.1:1"}); err != nil {
		t.Fatalf("RegisterNode: %v", err)
	}
	if n, _, err := s.Node(ctx, ReadOptions{}, "n1"); err != nil || n.GetAddress() != "127.0.0.1:1" {
		t.Fatalf("node after RegisterNode: %v %v", n, err)
	}
	a, idx, err := s.RegisterAgent(ctx, &meshnodev1.Agent{Id: "n1/a", Name: "a", Node: "n1"})
	if err != nil || a.GetModifyIndex() != idx || a.GetCreateIndex() != idx || idx == 0 {
		t.Fatalf("RegisterAgent: %v at %d, %v", a, idx, err)
	}
	a, idx2, err := s.SetAgentStatus(ctx, "n1/a", meshnodev1.AgentStatus_AGENT_STATUS_READY)
	if err != nil || a.GetStatus() != meshnodev1.AgentStatus_AGENT_STATUS_READY || a.GetModifyIndex() != idx2 || idx2 <= idx {
		t.Fatalf("SetAgentStatus: %v at %d, %v", a, idx2, err)
	}
	a, fidx, err := s.FlagAgent(ctx, "n1/a", "equivocated on p1", nil)
	if err != nil || !a.GetFlagged() || a.GetFlaggedReason() != "equivocated on p1" {
		t.Fatalf("FlagAgent: %v, %v", a, err)
	}
	// The same evidence reported again (by another node) flags once.
	if _, again, err := s.FlagAgent(ctx, "n1/a", "equivocated on p1", nil); err != nil || again != fidx {
		t.Fatalf("second FlagAgent with the same reason: index %d (first %d), %v", again, fidx, err)
	}
	if a, _, err = s.RegisterAgent(ctx, &meshnodev1.Agent{Id: "n1/a", Name: "a", Node: "n1"}); err != nil || !a.GetFlagged() {
		t.Fatalf("re-registering cleared the flag: %v, %v", a, err)
	}
	_, _, err = s.ClearFlag(ctx, "n1/a")
	wantRefused(t, "an unsigned ClearFlag", err, ErrPermissionDenied, meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED)
	clear := &meshnodev1.ClearFlagRequest{AgentId: "n1/a", Reason: "the model was rolled back"}
	if _, err := adminAs(ctx, t, s, "root", MethodClearFlag, func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_ClearFlag{ClearFlag: clear}
	}, clear); err != nil {
		t.Fatalf("signed ClearFlag: %v", err)
	}
	if a, _, err = s.Agent(ctx, ReadOptions{}, "n1/a"); err != nil || a.GetFlagged() {
		t.Fatalf("after ClearFlag: %v, %v", a, err)
	}
	if a, _, err = s.DeregisterAgent(ctx, "n1/a"); err != nil || a.GetId() != "n1/a" {
		t.Fatalf("DeregisterAgent: %v, %v", a, err)
	}
	_, _, err = s.DeregisterAgent(ctx, "n1/a")
	wantRefused(t, "DeregisterAgent of a missing agent", err, ErrNotFound, meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND)
	_, _, err = s.SetAgentStatus(ctx, "n1/missing", meshnodev1.AgentStatus_AGENT_STATUS_READY)
	wantRefused(t, "SetAgentStatus of a missing agent", err, ErrNotFound, meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND)
	_, _, err = s.FlagAgent(ctx, "n1/missing", "x", nil)
	wantRefused(t, "FlagAgent of a missing agent", err, ErrNotFound, meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND)
	if _, _, err := s.RegisterAgent(ctx, &meshnodev1.Agent{Id: "n1/b"}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("RegisterAgent without a node: %v, want ErrInvalidCommand", err)
	}
	if _, err := s.DeregisterNode(ctx, "n1"); err != nil {
		t.Fatalf("DeregisterNode: %v", err)
	}
	_, err = s.DeregisterNode(ctx, "n1")
	wantRefused(t, "DeregisterNode of a missing node", err, ErrNotFound, meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND)
}

func TestTypedPolicyAndCAWrites(t *testing.T) {
	s, ctx := singleStore(t)
	ops := newTestOperators(t)
	if _, err := s.PutTrustBundle(ctx, ops.bundle); err != nil {
		t.Fatalf("PutTrustBundle: %v", err)
	}
	p1, _ := proto.Marshal(&meshnodev1.RoutingPolicy{Capability: "*", Policy: "cost"})
	idx, err := signedPolicy(ctx, t, s, ops, "*", p1)
	if err != nil || idx == 0 {
		t.Fatalf("signed SetPolicy: %d, %v", idx, err)
	}
	if p, _, err := s.Policy(ctx, ReadOptions{}, "*"); err != nil || !proto.Equal(mustPolicy(t, p.GetPolicy()), mustPolicy(t, p1)) || p.GetModifyIndex() != idx {
		t.Fatalf("policy after SetPolicy: %v, %v", p, err)
	}
	del := func() error {
		req := &meshnodev1.DeletePolicyRequest{Capability: "*"}
		_, err := s.Admin(ctx, &meshnodev1.AdminCommand{Method: MethodDeletePolicy, Signature: ops.sign(t, "root", MethodDeletePolicy, req, time.Now()),
			Request: &meshnodev1.AdminCommand_DeletePolicy{DeletePolicy: req}})
		return err
	}
	if err := del(); err != nil {
		t.Fatalf("DeletePolicy: %v", err)
	}
	wantRefused(t, "DeletePolicy of a missing policy", del(), ErrNotFound, meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND)
	// Unsigned, the same write is refused.
	_, _, err = s.Apply(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_PutPolicy{PutPolicy: &meshnodev1.PutPolicyCommand{Policy: &meshnodev1.PolicyRecord{Key: "*", Policy: p1}}}})
	wantRefused(t, "unsigned PutPolicy", err, ErrPermissionDenied, meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED)

	if _, err := s.PutCARecord(ctx, "ca/material", []byte("m")); err != nil {
		t.Fatalf("PutCARecord: %v", err)
	}
	if v, _, err := s.CARecord(ctx, ReadOptions{}, "ca/material"); err != nil || string(v) != "m" {
		t.Fatalf("CA record after PutCARecord: %q, %v", v, err)
	}
}

func TestTypedTokenAndRevocationWrites(t *testing.T) {
	s, ctx := singleStore(t)
	exp := time.Now().Add(time.Hour)
	_, err := s.UseToken(ctx, TokenUse{ID: "t0", Expires: exp, Node: "s9", Server: true})
	wantRefused(t, "a token no operator issued", err, ErrPermissionDenied, meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED)
	issueSigned(ctx, t, s, "t1", "s9", meshnodev1.JoinRole_JOIN_ROLE_SERVER, false)
	issueSigned(ctx, t, s, "t3", "s9", meshnodev1.JoinRole_JOIN_ROLE_CLIENT, false)
	issueSigned(ctx, t, s, "t4", "s9", meshnodev1.JoinRole_JOIN_ROLE_CLIENT, true)
	if _, err := s.UseToken(ctx, TokenUse{ID: "t1-retry", Expires: exp, Node: "s9", Server: true}); err == nil {
		t.Fatal("an unissued id was accepted")
	}
	if _, err := s.UseToken(ctx, TokenUse{ID: "t1", Expires: exp, Node: "s9", Server: true}); err != nil {
		t.Fatalf("UseToken: %v", err)
	}
	if ok, err := s.ServerAdmitted(ctx, ReadOptions{}, "s9"); !ok || err != nil {
		t.Fatalf("server admitted by its token: %v, %v", ok, err)
	}
	// The second use is the same idempotency key: answered as a duplicate,
	// which is still a used token.
	_, err = s.UseToken(ctx, TokenUse{ID: "t1", Expires: exp})
	wantRefused(t, "second UseToken", err, ErrTokenUsed, meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED)
	// The same token under a fresh key reaches the state machine, which
	// refuses it itself.
	_, _, err = s.Apply(ctx, &meshnodev1.Command{IdempotencyKey: "other", Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{
		Id: "t1", ExpiresUnixNano: uint64(exp.UnixNano())}}})
	wantRefused(t, "UseToken under another key", err, ErrTokenUsed, meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED)
	if _, err := s.UseToken(ctx, TokenUse{ID: "t2"}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("UseToken without an expiry: %v, want ErrInvalidCommand", err)
	}

	// A name is claimed once: s9 is a server now, so an ordinary token
	// cannot claim it; a re-join token can. An expired token is refused by
	// the log's clock whatever the CA's clock said.
	_, err = s.UseToken(ctx, TokenUse{ID: "t3", Expires: exp, Node: "s9"})
	wantRefused(t, "a server's name under a new token", err, ErrNameTaken, meshnodev1.CommandStatus_COMMAND_STATUS_NAME_TAKEN)
	if _, err := s.UseToken(ctx, TokenUse{ID: "t4", Expires: exp, Node: "s9", Rejoin: true}); err != nil {
		t.Fatalf("re-join token for s9: %v", err)
	}
	_, err = s.UseToken(ctx, TokenUse{ID: "t5", Expires: time.Now().Add(-time.Second), Node: "fresh"})
	wantRefused(t, "an expired token", err, ErrTokenExpired, meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_EXPIRED)

	if _, err := revokeSigned(ctx, t, s, "n2", []string{"42"}, "key leaked"); err != nil {
		t.Fatalf("Revoke serial: %v", err)
	}
	if ok, _ := s.IsRevoked(ctx, ReadOptions{}, "42"); !ok {
		t.Fatal("serial 42 not revoked")
	}
	if ok, _ := s.IsNodeRevoked(ctx, ReadOptions{}, "n2"); ok {
		t.Fatal("revoking one serial revoked the whole node")
	}
	if _, err := revokeSigned(ctx, t, s, "s9", nil, "decommissioned"); err != nil {
		t.Fatalf("Revoke node: %v", err)
	}
	if ok, _ := s.IsNodeRevoked(ctx, ReadOptions{}, "s9"); !ok {
		t.Fatal("node s9 not revoked")
	}
	if ok, _ := s.ServerAdmitted(ctx, ReadOptions{}, "s9"); ok {
		t.Fatal("a revoked node kept its server admission")
	}
	if _, err := s.AdmitServer(ctx, "s3"); err != nil {
		t.Fatalf("AdmitServer: %v", err)
	}
	if ok, _ := s.ServerAdmitted(ctx, ReadOptions{}, "s3"); !ok {
		t.Fatal("s3 not admitted")
	}
}

func TestTypedPutDecision(t *testing.T) {
	s, ctx := singleStore(t)
	d, idx, err := s.PutDecision(ctx, &meshnodev1.DecisionRecord{Id: "p1", Status: DecisionPending, Decision: []byte("pending")})
	if err != nil || d.GetStatus() != DecisionPending || d.GetModifyIndex() != idx {
		t.Fatalf("PutDecision pending: %v at %d, %v", d, idx, err)
	}
	d, idx2, err := s.PutDecision(ctx, &meshnodev1.DecisionRecord{Id: "p1", Status: "approved", Decision: []byte("A")})
	if err != nil || d.GetStatus() != "approved" || d.GetCreateIndex() != idx || d.GetModifyIndex() != idx2 {
		t.Fatalf("PutDecision final: %v, %v", d, err)
	}
	// A proposal decides once: the standing decision comes back unchanged.
	d, _, err = s.PutDecision(ctx, &meshnodev1.DecisionRecord{Id: "p1", Status: "rejected", Decision: []byte("B")})
	if err != nil || d.GetStatus() != "approved" || string(d.GetDecision()) != "A" || d.GetModifyIndex() != idx2 {
		t.Fatalf("PutDecision over a final decision: %v, %v", d, err)
	}
	if _, _, err := s.PutDecision(ctx, &meshnodev1.DecisionRecord{Id: "p2"}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("PutDecision without a status: %v, want ErrInvalidCommand", err)
	}
}

func TestRefusedErrorIsItsSentinel(t *testing.T) {
	for _, tc := range []struct {
		st   meshnodev1.CommandStatus
		want error
	}{
		{meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND, ErrNotFound},
		{meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED, ErrTokenUsed},
		{meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, ErrInvalidCommand},
		{meshnodev1.CommandStatus_COMMAND_STATUS_UNSPECIFIED, ErrInvalidCommand},
	} {
		err := resultError(&meshnodev1.CommandResult{Status: tc.st, Message: "m"})
		if !errors.Is(err, tc.want) || err.Error() != tc.want.Error()+": m" {
			t.Errorf("%s: %v, want %v", tc.st, err, tc.want)
		}
	}
	if err := resultError(&meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_OK}); err != nil {
		t.Errorf("OK result: %v", err)
	}
}
