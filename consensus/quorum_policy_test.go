package consensus

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	quorumrules "github.com/agentmesh/meshnode/quorum"
)

// decidedRecord builds a decided proposal of kind "payment" voted by the
// agents on nodes (one each, registered in st at index), approving, with
// a valid certificate under rule, judged under pol.
func decidedRecord(t *testing.T, st *state, index uint64, cluster, id string, rule *meshnodev1.QuorumRule, nodes []string, pol *meshnodev1.QuorumPolicyRecord) *meshnodev1.DecisionRecord {
	t.Helper()
	var voters []quorumrules.Voter
	keys := map[string]ed25519.PrivateKey{}
	for i, n := range nodes {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		agentID := fmt.Sprintf("%s/v%d", n, i)
		keys[agentID] = key
		voters = append(voters, quorumrules.Voter{AgentID: agentID, Node: n, PublicKey: pub})
		applyAs(st, index, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_RegisterAgent{RegisterAgent: &meshnodev1.RegisterAgentCommand{
			Agent: &meshnodev1.Agent{Id: agentID, Name: fmt.Sprintf("v%d", i), Node: n, VotePublicKey: pub}}}})
		index++
	}
	payload := []byte(`{"amount": 1000000}`)
	created := time.Unix(0, testNow)
	p := &meshnodev1.Proposal{Id: id, Kind: "payment", Payload: payload, PayloadDigest: quorumrules.PayloadDigest(payload),
		Selection: &meshnodev1.VoterSelection{AgentIds: func() (ids []string) {
			for _, v := range voters {
				ids = append(ids, v.AgentID)
			}
			return
		}()}, Rule: rule, ProposerNode: nodes[0], CreatedAt: timestamppb.New(created), Deadline: timestamppb.New(created.Add(time.Minute)),
		Electorate: quorumrules.Electorate(voters)}
	tally, err := quorumrules.NewTally(cluster, p, voters)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range voters {
		if err := tally.Add(quorumrules.NewVote(cluster, p, meshnodev1.Choice_CHOICE_APPROVE, "ok", v.AgentID, v.Node, keys[v.AgentID])); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := tally.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	d := &meshnodev1.Decision{Proposal: p, Status: meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED, Outcome: meshnodev1.Choice_CHOICE_APPROVE, Certificate: cert, Policy: pol}
	b, _ := proto.Marshal(d)
	return &meshnodev1.DecisionRecord{Id: id, Status: "decided", Decision: b}
}

// The state machine commits a decided proposal only under the policy in
// force for its kind: a self-approval (one voter, unanimous or 1-of-1) with
// perfectly valid signatures is refused, from a server as from anyone; a
// BFT decision of four distinct hosts is committed; a decision that claims
// a weaker policy than the one an operator set is refused.
func TestStateMachineEnforcesQuorumPolicy(t *testing.T) {
	ops := newTestOperators(t)
	st := testState(64)
	applyAs(st, 1, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}})
	cluster := hex.EncodeToString(ClusterID(ops.bundle))
	builtIn := &meshnodev1.QuorumPolicyRecord{Policy: quorumrules.DefaultPolicy()}
	put := func(index uint64, rec *meshnodev1.DecisionRecord) *meshnodev1.CommandResult {
		return applyAs(st, index, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: rec}}})[0]
	}
	unanimous := &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS}
	oneOfOne := &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 1}
	if r := put(20, decidedRecord(t, st, 10, cluster, "self-1", unanimous, []string{"c1"}, builtIn)); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "at least 4") {
		t.Fatalf("a unanimous self-approval: %v", r)
	}
	if r := put(30, decidedRecord(t, st, 21, cluster, "self-2", oneOfOne, []string{"c1"}, builtIn)); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
		t.Fatalf("a 1-of-1 self-approval: %v", r)
	}
	disguised := decidedRecord(t, st, 200, cluster, "self-3", oneOfOne, []string{"c1"}, builtIn)
	disguised.Status = "no_quorum"
	if r := put(210, disguised); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_INVALID || !strings.Contains(r.GetMessage(), "record status") {
		t.Fatalf("a decided self-approval recorded as no_quorum, past the checks: %v", r)
	}
	bft := &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}
	if r := put(40, decidedRecord(t, st, 31, cluster, "ok-1", bft, []string{"a", "b", "c", "d"}, builtIn)); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("a BFT decision of 4 distinct hosts: %v", r)
	}
	if r := put(50, decidedRecord(t, st, 41, "other-cluster", "ok-2", bft, []string{"a", "b", "c", "d"}, builtIn)); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED {
		t.Fatalf("votes signed for another cluster: %v", r)
	}

	// An operator pins the kind to five named hosts; the old terms no
	// longer commit.
	pol := &meshnodev1.QuorumPolicy{Kind: "payment", MinVoters: 5, EligibleNodes: []string{"a", "b", "c", "d", "e"}}
	req := &meshnodev1.SetQuorumPolicyRequest{Policy: pol}
	if r := applyAs(st, 60, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodSetQuorumPolicy,
		Signature: ops.sign(t, "root", MethodSetQuorumPolicy, req, time.Unix(0, testNow)), Request: &meshnodev1.AdminCommand_SetQuorumPolicy{SetQuorumPolicy: req}}}})[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("set quorum policy: %v", r)
	}
	txn, _ := st.read()
	inForce := effectivePolicy(txn, "payment")
	if r := put(70, decidedRecord(t, st, 61, cluster, "old-terms", bft, []string{"a", "b", "c", "d"}, builtIn)); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "not the one in force") {
		t.Fatalf("a decision claiming the built-in policy after an operator set one: %v", r)
	}
	if r := put(80, decidedRecord(t, st, 71, cluster, "unpinned", bft, []string{"a", "b", "c", "d", "x"}, inForce)); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "eligible nodes") {
		t.Fatalf("a voter outside the pinned hosts (a compromised server's CA could certify it): %v", r)
	}
	if r := put(90, decidedRecord(t, st, 81, cluster, "pinned", bft, []string{"a", "b", "c", "d", "e"}, inForce)); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("a decision on the pinned hosts under the policy in force: %v", r)
	}

	// Pinned keys: keys a server wrote into the registry (every agent
	// re-registered with a fresh key by decidedRecord) do not count.
	var pinned [][]byte
	for range 5 {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		pinned = append(pinned, pub)
	}
	keyed := &meshnodev1.SetQuorumPolicyRequest{Policy: &meshnodev1.QuorumPolicy{Kind: "payment", MinVoters: 5, EligibleKeys: pinned}}
	if r := applyAs(st, 300, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: &meshnodev1.AdminCommand{Method: MethodSetQuorumPolicy,
		Signature: ops.sign(t, "root", MethodSetQuorumPolicy, keyed, time.Unix(0, testNow)), Request: &meshnodev1.AdminCommand_SetQuorumPolicy{SetQuorumPolicy: keyed}}}})[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		t.Fatalf("set a key-pinning policy: %v", r)
	}
	txn, _ = st.read()
	if r := put(320, decidedRecord(t, st, 310, cluster, "unpinned-keys", bft, []string{"a", "b", "c", "d", "e"}, effectivePolicy(txn, "payment"))); r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED || !strings.Contains(r.GetMessage(), "pinned keys") {
		t.Fatalf("votes by keys the policy does not pin: %v", r)
	}
}
