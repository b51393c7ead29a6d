package consensus

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func decisionBlob(t testing.TB, proposerNode, status string) *meshnodev1.DecisionRecord {
	t.Helper()
	b, err := proto.Marshal(&meshnodev1.Decision{Proposal: &meshnodev1.Proposal{Id: "p-" + proposerNode, ProposerNode: proposerNode, ProposerAgentId: proposerNode + "/a"}})
	if err != nil {
		t.Fatal(err)
	}
	return &meshnodev1.DecisionRecord{Id: "p-" + proposerNode, Status: status, Decision: b}
}

// adminCommands are the writes a client node must not make: each would let a
// stolen client certificate take over or break the cluster.
func adminCommands(t testing.TB) map[string]*meshnodev1.Command {
	return map[string]*meshnodev1.Command{
		"revoke a server":               {Op: &meshnodev1.Command_Revoke{Revoke: &meshnodev1.RevokeCommand{Node: "s0", Reason: "takeover"}}},
		"flag another node's agent":     {Op: &meshnodev1.Command_FlagAgent{FlagAgent: &meshnodev1.FlagAgentCommand{Id: "s0/a", Reason: "framed"}}},
		"clear a flag":                  {Op: &meshnodev1.Command_ClearFlag{ClearFlag: &meshnodev1.ClearFlagCommand{Id: "s0/a"}}},
		"deregister another node":       {Op: &meshnodev1.Command_DeregisterNode{DeregisterNode: &meshnodev1.DeregisterNodeCommand{Name: "s0"}}},
		"put a policy":                  {Op: &meshnodev1.Command_PutPolicy{PutPolicy: &meshnodev1.PutPolicyCommand{Policy: &meshnodev1.PolicyRecord{Key: "x", Policy: []byte("x")}}}},
		"delete a policy":               {Op: &meshnodev1.Command_DeletePolicy{DeletePolicy: &meshnodev1.DeletePolicyCommand{Key: "x"}}},
		"record another node's vote":    {Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: decisionBlob(t, "s0", "approved")}}},
		"forge a reviewed approval":     {Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: decisionBlob(t, "c0", DecisionReviewed)}}},
		"replace the CA record":         {Op: &meshnodev1.Command_PutCaRecord{PutCaRecord: &meshnodev1.PutCARecordCommand{Record: &meshnodev1.CARecord{Key: "root", Value: []byte("mine")}}}},
		"admit itself as a server":      {Op: &meshnodev1.Command_AdmitServer{AdmitServer: &meshnodev1.AdmitServerCommand{Node: "c0"}}},
		"call itself a server":          {Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: "c0", Address: "127.0.0.1:1", Role: "server"}}}},
		"register a server's agent":     agentCmd("s0/evil", "x"),
		"take over a server's record":   {Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: "s0", Address: "127.0.0.1:1"}}}},
		"set a server's agent's status": {Op: &meshnodev1.Command_SetAgentStatus{SetAgentStatus: &meshnodev1.SetAgentStatusCommand{Id: "s0/a", Status: meshnodev1.AgentStatus_AGENT_STATUS_DRAINING}}},
	}
}

// A client node's forwarded admin writes are refused; its own records go
// through. The refusal names the rule, and the state is unchanged.
func TestClientNodeCannotMakeAdminWrites(t *testing.T) {
	c := newCluster(t, 1, 1, nil)
	l, cl := c.leader().store, c.client(0).store
	mustApply(t, l, agentCmd("s0/a", "x"))
	before := l.Index()
	for name, cmd := range adminCommands(t) {
		// The client lies about its origin too: the server stamps the truth.
		cmd.Origin = "s0"
		_, _, err := cl.Apply(context.Background(), cmd)
		if !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("client: %s: %v, want ErrPermissionDenied", name, err)
		}
	}
	if a, _, err := l.Agent(context.Background(), consistent, "s0/a"); err != nil || a.GetFlagged() || a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_DRAINING {
		t.Errorf("s0/a after the refused writes: %v, %v", a, err)
	}
	if revoked, err := l.IsNodeRevoked(context.Background(), consistent, "s0"); revoked || err != nil {
		t.Errorf("s0 revoked by a client: %v %v", revoked, err)
	}
	if ok, _ := l.ServerAdmitted(context.Background(), consistent, "c0"); ok {
		t.Error("the client admitted itself as a server")
	}
	if l.Index() != before {
		t.Errorf("refused writes reached the log: index %d -> %d", before, l.Index())
	}
	// Its own records still go through, and so does a decision of its own
	// agent's proposal.
	own := []*meshnodev1.Command{
		{Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: "c0", Address: "127.0.0.1:2", Role: "client"}}}},
		agentCmd("c0/a", "x"),
		{Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: decisionBlob(t, "c0", "approved")}}},
	}
	for _, cmd := range own {
		if _, _, err := cl.Apply(context.Background(), cmd); err != nil {
			t.Errorf("client writing its own %T: %v", cmd.GetOp(), err)
		}
	}
}

// The state machine judges every command by its origin, however it reached
// the log: a client-stamped batch that skips the handlers changes nothing,
// and the same batch from a server is applied.
func TestStateMachineJudgesOriginAtApply(t *testing.T) {
	st := testState(16)
	applyOne(t, st, 1, agentCmd("srv/a", "x"))
	var idx uint64 = 2
	for name, cmd := range adminCommands(t) {
		cmd.Version, cmd.Origin, cmd.IdempotencyKey = CommandVersion, "c0", "k-"+name
		r := st.applyBatch(idx, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: []*meshnodev1.Command{cmd}})[0]
		idx++
		if r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
			t.Errorf("%s from client origin: %v", name, r)
		}
	}
	noOrigin := agentCmd("srv/b", "x")
	noOrigin.Version = CommandVersion
	if r := st.applyBatch(idx, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: []*meshnodev1.Command{noOrigin}})[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
		t.Errorf("command without origin: %v", r)
	}
	if r := revokeInState(t, st, idx+1, "c9"); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Errorf("signed revoke relayed by a server: %v", r)
	}
}

// A revoked node's agents leave rotation for good: the revocation marks them
// revoked in the same entry, and no write — a server's included — registers
// or changes the node or its agents again.
func TestRevokedNodesAgentsAreKeptButFrozen(t *testing.T) {
	st := testState(16)
	applyOne(t, st, 1, stamp([]*meshnodev1.Command{agentCmd("c9/a", "x")})[0])
	if r := revokeInState(t, st, 2, "c9"); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("revoke: %v", r)
	}
	txn, _ := st.read()
	if a := first[*meshnodev1.Agent](txn, tableAgents, "c9/a"); a.GetStatus() != meshnodev1.AgentStatus_AGENT_STATUS_REVOKED || a.GetModifyIndex() != 3 {
		t.Fatalf("agent of the revoked node: %v", a)
	}
	for name, cmd := range map[string]*meshnodev1.Command{
		"re-register its agent": agentCmd("c9/a", "x"),
		"set its agent ready":   {Op: &meshnodev1.Command_SetAgentStatus{SetAgentStatus: &meshnodev1.SetAgentStatusCommand{Id: "c9/a", Status: meshnodev1.AgentStatus_AGENT_STATUS_READY}}},
		"register its record":   {Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: "c9", Address: "127.0.0.1:9"}}}},
	} {
		if r := applyOne(t, st, 4, stamp([]*meshnodev1.Command{cmd})[0]); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
			t.Errorf("%s after revocation: %v", name, r)
		}
	}
}
