package consensus

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func applyAs(st *state, index uint64, origin string, cmds ...*meshnodev1.Command) []*meshnodev1.CommandResult {
	for _, c := range cmds {
		c.Version, c.Origin = CommandVersion, origin
	}
	return st.applyBatch(index, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: cmds})
}

// A client node cannot fill every replica's memory: its agents, decision
// sizes and remembered idempotency keys are bounded; a server is not held
// to the client quotas.
func TestClientQuotas(t *testing.T) {
	st := testState(16)
	var cmds []*meshnodev1.Command
	for i := range clientMaxAgents {
		cmds = append(cmds, agentCmd(fmt.Sprintf("c1/a%d", i), "x"))
	}
	for i, r := range applyAs(st, 1, "c1", cmds...) {
		if r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
			t.Fatalf("agent %d: %v", i, r)
		}
	}
	if r := applyAs(st, 2, "c1", agentCmd("c1/one-more", "x"))[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_QUOTA_EXCEEDED {
		t.Fatalf("agent over the quota: %v", r)
	}
	// Re-registering an existing agent is not a new one.
	if r := applyAs(st, 3, "c1", agentCmd("c1/a0", "y"))[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("re-register within the quota: %v", r)
	}
	blob, err := proto.Marshal(&meshnodev1.Decision{Proposal: &meshnodev1.Proposal{Id: "p-big", ProposerNode: "c1", Payload: make([]byte, clientMaxDecisionBytes)}})
	if err != nil {
		t.Fatal(err)
	}
	big := &meshnodev1.DecisionRecord{Id: "p-big", Status: "approved", Decision: blob}
	if r := applyAs(st, 4, "c1", &meshnodev1.Command{Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: big}}})[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_QUOTA_EXCEEDED {
		t.Fatalf("oversized decision from a client: %v", r)
	}
	// Remembered keys: c2 fills its share; c3 and the server are unaffected.
	cmds = cmds[:0]
	for i := range clientMaxDedupKeys {
		c := &meshnodev1.Command{IdempotencyKey: fmt.Sprintf("k%d", i), Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: "c2", Address: "127.0.0.1:2"}}}}
		cmds = append(cmds, c)
	}
	applyAs(st, 5, "c2", cmds...)
	node := func(name string) *meshnodev1.Command {
		return &meshnodev1.Command{IdempotencyKey: "next", Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: name, Address: "127.0.0.1:3"}}}}
	}
	if r := applyAs(st, 6, "c2", node("c2"))[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_QUOTA_EXCEEDED {
		t.Fatalf("keyed write over the dedup quota: %v", r)
	}
	// A retry of a remembered key is still answered as a duplicate.
	if r := applyAs(st, 7, "c2", cmds[0])[0]; !r.GetDuplicate() {
		t.Fatalf("retry of a remembered key: %v", r)
	}
	if r := applyAs(st, 8, "c3", node("c3"))[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("another client's write: %v", r)
	}
	// The same key from another origin is its own write, not c2's.
	if r := applyAs(st, 9, testOrigin, &meshnodev1.Command{IdempotencyKey: "k1", Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: "s7", Address: "127.0.0.1:7"}}}})[0]; r.GetDuplicate() || r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("a server's write under a key c2 used: %v", r)
	}
}
