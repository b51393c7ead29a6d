package consensus

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	quorumrules "github.com/agentmesh/meshnode/quorum"
)

// An agent name is the first registering uid's, across deregistration and
// re-registration, until an operator removes the agent; a vote key is one
// agent's for good; keys are kept with the indexes they were valid, so the
// key an agent held when a decision was committed is still known after it
// re-keys and deregisters.
func TestAgentNamesAndKeysAreOwned(t *testing.T) {
	ops := newTestOperators(t)
	st := testState(64)
	applyAs(st, 1, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}})
	key := func() []byte { pub, _, _ := ed25519.GenerateKey(rand.Reader); return pub }
	k1, k2, k3 := key(), key(), key()
	register := func(index uint64, id string, uid uint32, vote []byte) *meshnodev1.CommandResult {
		node, name, _ := strings.Cut(id, "/")
		return applyAs(st, index, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_RegisterAgent{RegisterAgent: &meshnodev1.RegisterAgentCommand{
			Agent: &meshnodev1.Agent{Id: id, Name: name, Node: node, OwnerUid: uid, VotePublicKey: vote}}}})[0]
	}
	deregister := func(index uint64, id string) {
		applyAs(st, index, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_DeregisterAgent{DeregisterAgent: &meshnodev1.DeregisterAgentCommand{Id: id}}})
	}
	wantDenied := func(r *meshnodev1.CommandResult, what, says string) {
		t.Helper()
		if r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), says) {
			t.Fatalf("%s: %v, want PermissionDenied saying %q", what, r, says)
		}
	}
	if r := register(2, "n1/pay", 1000, k1); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("first registration: %v", r)
	}
	wantDenied(register(3, "n1/pay", 1001, key()), "another uid, agent registered", "belongs to uid 1000")
	deregister(4, "n1/pay")
	wantDenied(register(5, "n1/pay", 1001, key()), "another uid, agent deregistered", "belongs to uid 1000")
	wantDenied(register(6, "n2/copycat", 1001, k1), "another agent with a key that was n1/pay's", "is agent n1/pay's")
	if r := register(7, "n1/pay", 1000, k2); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("the owner re-registering with a new key: %v", r)
	}
	if r := register(8, "n1/pay", 1000, k3); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("the owner re-keying: %v", r)
	}
	deregister(9, "n1/pay")

	txn, _ := st.read()
	var history []*meshnodev1.AgentKey
	it, _ := txn.Get(tableAgentKeys, "agent", "n1/pay")
	for obj := it.Next(); obj != nil; obj = it.Next() {
		history = append(history, obj.(*meshnodev1.AgentKey))
	}
	if len(history) != 3 {
		t.Fatalf("key history %v, want 3 keys", history)
	}
	for at, want := range map[uint64][]byte{2: k1, 3: k1, 7: k2, 8: k3} {
		lookup := quorumrules.HistoryKeys(history, at)
		v, err := lookup.Voter("n1/pay")
		if err != nil || !ed25519.PublicKey(want).Equal(v.PublicKey) || v.Node != "n1" {
			t.Fatalf("key at index %d: %v, %v", at, v, err)
		}
	}
	if _, err := quorumrules.HistoryKeys(history, 9).Voter("n1/pay"); err == nil {
		t.Fatal("a key after the agent deregistered")
	}

	// An operator frees the name.
	req := &meshnodev1.RemoveAgentRequest{Id: "n1/pay"}
	if r := applyAs(st, 10, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodRemoveAgent,
		Signature: ops.sign(t, "root", MethodRemoveAgent, req, time.Unix(0, testNow)), Request: &meshnodev1.AdminCommand_RemoveAgent{RemoveAgent: req}}}})[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("operator removes n1/pay: %v", r)
	}
	if r := register(11, "n1/pay", 1001, key()); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("another uid after an operator freed the name: %v", r)
	}
	wantDenied(register(12, "n3/thief", 1001, k2), "a retired key of another agent", "is agent n1/pay's")
}
