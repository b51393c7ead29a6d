package node_test

import (
	"context"
	"crypto/ed25519"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func voter(choice agent.Choice) agent.VoteHandlerFunc {
	return func(context.Context, *meshnodev1.Proposal) (agent.Choice, string, error) {
		return choice, "checked", nil
	}
}

// TestQuorumWithALiar: four voters on four nodes (f = 1); one votes against
// the honest majority. The decision is the honest one, its certificate
// verifies against the registered keys, and a tampered copy does not.
func TestQuorumWithALiar(t *testing.T) {
	nodes := startFourNodes(t)
	for i, n := range nodes {
		a := &agent.Agent{Name: "judge", Socket: n.socket}
		a.Handle(agent.Capability{Name: "judge"}, echoFrom(n.name))
		choice := agent.Approve
		if i == 3 {
			choice = agent.Reject // the liar
		}
		a.HandleVote("payment.approve", voter(choice))
		runAgent(t, a)
	}
	waitFor(t, 30*time.Second, "n1 sees 4 ready judges", func() bool { return len(readyAgents(t, nodes[0], "judge")) == 4 })

	q := meshnodev1.NewQuorumServiceClient(nodes[0].conn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := q.Propose(ctx, &meshnodev1.ProposeRequest{Wait: true, Proposal: &meshnodev1.Proposal{
		Id: "pay-1", Kind: "payment.approve", Payload: []byte(`{"amount":900}`),
		Selection: &meshnodev1.VoterSelection{Capability: "judge", Count: 4},
		Rule:      &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT},
		Deadline:  timestamppb.New(time.Now().Add(20 * time.Second)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDecision()
	if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED || d.GetOutcome() != meshnodev1.Choice_CHOICE_APPROVE {
		t.Fatalf("decision %v / %v (%s), want DECIDED / APPROVE", d.GetStatus(), d.GetOutcome(), d.GetDetail())
	}
	keys := registryKeys(t, nodes[2])
	if err := quorum.VerifyCertificateSignatures(d.GetCertificate(), keys); err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	tampered := proto.Clone(d.GetCertificate()).(*meshnodev1.QuorumCertificate)
	tampered.Choice = meshnodev1.Choice_CHOICE_REJECT
	if quorum.VerifyCertificateSignatures(tampered, keys) == nil {
		t.Fatal("a certificate with its choice changed still verifies")
	}
	// Proposing the same id again returns the same decision.
	again, err := q.Propose(ctx, &meshnodev1.ProposeRequest{Wait: true, Proposal: &meshnodev1.Proposal{
		Id: "pay-1", Kind: "payment.approve", Payload: []byte(`{"amount":900}`),
		Selection: &meshnodev1.VoterSelection{Capability: "judge", Count: 4},
		Rule:      &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT},
		Deadline:  timestamppb.New(time.Now().Add(20 * time.Second)),
	}})
	if err != nil || !proto.Equal(again.GetDecision().GetCertificate(), d.GetCertificate()) {
		t.Fatalf("re-proposing pay-1: %v; same certificate: %v", err, err == nil && proto.Equal(again.GetDecision().GetCertificate(), d.GetCertificate()))
	}
	// Every node reads the committed decision.
	got, err := meshnodev1.NewQuorumServiceClient(nodes[3].conn(t)).GetDecision(ctx, &meshnodev1.GetDecisionRequest{Id: "pay-1"})
	if err != nil || got.GetDecision().GetOutcome() != meshnodev1.Choice_CHOICE_APPROVE {
		t.Fatalf("GetDecision on n4: %v %v", err, got.GetDecision().GetOutcome())
	}
}

// startFourNodes is startCluster (n1, n2 servers, n3 a client) plus n4, a
// second client: four hosts for f = 1.
func startFourNodes(tb testing.TB) []*testNode {
	nodes := startCluster(tb)
	root, _ := os.MkdirTemp("", "mnq")
	tb.Cleanup(func() { os.RemoveAll(root) })
	return append(nodes, startTestNode(tb, root, "n4", false, []string{nodes[0].addr}, nodes[0].token(tb, false, "n4")))
}

func registryKeys(t *testing.T, tn *testNode) quorum.KeyMap {
	t.Helper()
	resp, err := meshnodev1.NewRegistryServiceClient(tn.conn(t)).ListAgents(context.Background(), &meshnodev1.ListAgentsRequest{Consistency: meshnodev1.Consistency_CONSISTENCY_CONSISTENT})
	if err != nil {
		t.Fatal(err)
	}
	var vs []quorum.Voter
	for _, a := range resp.GetAgents() {
		if len(a.GetVotePublicKey()) == ed25519.PublicKeySize {
			vs = append(vs, quorum.Voter{AgentID: a.GetId(), Node: a.GetNode(), PublicKey: a.GetVotePublicKey()})
		}
	}
	return quorum.NewKeyMap(vs...)
}

// TestEquivocatorIsFlagged: a voter that signs two different votes for one
// request is flagged in the registry, and the decision still stands.
func TestEquivocatorIsFlagged(t *testing.T) {
	nodes := startFourNodes(t)
	n4 := nodes[3]
	// Two honest approvals and one honest rejection: the Byzantine voter's
	// first (approving) vote is needed for the quorum, so it is always asked.
	for i, n := range nodes[:3] {
		a := &agent.Agent{Name: "judge", Socket: n.socket}
		a.Handle(agent.Capability{Name: "judge"}, echoFrom(n.name))
		choice := agent.Approve
		if i == 2 {
			choice = agent.Reject
		}
		a.HandleVote("", voter(choice))
		runAgent(t, a)
	}
	// The Byzantine voter speaks the raw API so it can sign twice.
	pub, priv, _ := ed25519.GenerateKey(nil)
	conn := n4.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := meshnodev1.NewRegistryServiceClient(conn).Register(ctx, &meshnodev1.RegisterRequest{Name: "judge",
		Capabilities: []*meshnodev1.Capability{{Name: "judge"}}, VotePublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	serve, err := meshnodev1.NewInvokeServiceClient(conn).Serve(ctx, &meshnodev1.ServeRequest{AgentId: "judge"})
	if err != nil {
		t.Fatal(err)
	}
	secondVote := make(chan error, 1)
	go func() {
		for {
			ev, err := serve.Recv()
			if err != nil {
				return
			}
			ask := ev.GetVote()
			if ask == nil {
				continue
			}
			q := meshnodev1.NewQuorumServiceClient(conn)
			yes := quorum.NewVote(ask.GetClusterId(), ask.GetProposal(), meshnodev1.Choice_CHOICE_APPROVE, "yes", "n4/judge", "n4", priv)
			no := quorum.NewVote(ask.GetClusterId(), ask.GetProposal(), meshnodev1.Choice_CHOICE_REJECT, "no", "n4/judge", "n4", priv)
			q.Vote(ctx, &meshnodev1.VoteRequest{RequestId: ask.GetRequestId(), Vote: yes})
			_, err = q.Vote(ctx, &meshnodev1.VoteRequest{RequestId: ask.GetRequestId(), Vote: no})
			secondVote <- err
		}
	}()
	waitFor(t, 30*time.Second, "n1 sees 4 ready judges", func() bool { return len(readyAgents(t, nodes[0], "judge")) == 4 })
	resp, err := meshnodev1.NewQuorumServiceClient(nodes[0].conn(t)).Propose(ctx, &meshnodev1.ProposeRequest{Wait: true, Proposal: &meshnodev1.Proposal{
		Id: "eq-1", Kind: "payment.approve", Payload: []byte("x"),
		Selection: &meshnodev1.VoterSelection{Capability: "judge", Count: 4},
		Deadline:  timestamppb.New(time.Now().Add(20 * time.Second)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDecision().GetOutcome() != meshnodev1.Choice_CHOICE_APPROVE {
		t.Fatalf("outcome %v (%s), want APPROVE", resp.GetDecision().GetOutcome(), resp.GetDecision().GetDetail())
	}
	select {
	case err := <-secondVote:
		if err == nil {
			t.Fatal("the node accepted a second, different vote for one request")
		}
	case <-ctx.Done():
		t.Fatal("the Byzantine voter was never asked")
	}
	waitFor(t, 20*time.Second, "n4/judge is flagged in the registry", func() bool {
		r, err := meshnodev1.NewRegistryServiceClient(nodes[0].conn(t)).ListAgents(ctx, &meshnodev1.ListAgentsRequest{Capability: "judge"})
		if err != nil {
			return false
		}
		for _, a := range r.GetAgents() {
			if a.GetId() == "n4/judge" {
				return a.GetFlagged()
			}
		}
		return false
	})
}

// TestEscalatedDecisionIsReviewed: a split vote with on_no_quorum=escalate
// waits for an operator; the review is recorded once, with who made it.
func TestEscalatedDecisionIsReviewed(t *testing.T) {
	nodes := startFourNodes(t)
	for i, n := range nodes {
		a := &agent.Agent{Name: "judge", Socket: n.socket}
		a.Handle(agent.Capability{Name: "judge"}, echoFrom(n.name))
		choice := agent.Approve
		if i%2 == 1 {
			choice = agent.Reject
		}
		a.HandleVote("", voter(choice))
		runAgent(t, a)
	}
	waitFor(t, 30*time.Second, "n1 sees 4 ready judges", func() bool { return len(readyAgents(t, nodes[0], "judge")) == 4 })
	q := meshnodev1.NewQuorumServiceClient(nodes[0].conn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := q.Propose(ctx, &meshnodev1.ProposeRequest{Wait: true, Proposal: &meshnodev1.Proposal{
		Id: "split-1", Kind: "payment.approve", Payload: []byte("x"),
		Selection:  &meshnodev1.VoterSelection{Capability: "judge", Count: 4},
		OnNoQuorum: meshnodev1.NoQuorumAction_NO_QUORUM_ACTION_ESCALATE,
		Deadline:   timestamppb.New(time.Now().Add(10 * time.Second)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDecision().GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW {
		t.Fatalf("a 2-2 split decided %v (%s), want NEEDS_REVIEW", resp.GetDecision().GetStatus(), resp.GetDecision().GetDetail())
	}
	// A review is an admin command: unsigned, no socket may make one, a
	// server's included; signed by a reviewer it goes through any node.
	if _, err := q.Review(ctx, &meshnodev1.ReviewRequest{Id: "split-1", Outcome: meshnodev1.Choice_CHOICE_APPROVE, Reason: "self-approval"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unsigned review on a server: %v, want PermissionDenied", err)
	}
	if _, err := meshnodev1.NewQuorumServiceClient(nodes[2].conn(t)).Review(ctx, &meshnodev1.ReviewRequest{Id: "split-1", Outcome: meshnodev1.Choice_CHOICE_APPROVE, Reason: "self-approval"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("review through a client node: %v, want PermissionDenied", err)
	}
	reviewer := meshnodev1.NewQuorumServiceClient(nodes[2].operatorConn(t, nodes[0].dir))
	rev, err := reviewer.Review(ctx, &meshnodev1.ReviewRequest{Id: "split-1", Outcome: meshnodev1.Choice_CHOICE_REJECT, Reason: "amount too high"})
	if err != nil {
		t.Fatal(err)
	}
	d := rev.GetDecision()
	if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED || d.GetReview().GetOperator() != "admin" || d.GetReview().GetReason() != "amount too high" || d.GetReview().GetSignature() == nil {
		t.Fatalf("reviewed decision: %v by %q (%q)", d.GetStatus(), d.GetReview().GetOperator(), d.GetReview().GetReason())
	}
	if _, err := reviewer.Review(ctx, &meshnodev1.ReviewRequest{Id: "split-1", Outcome: meshnodev1.Choice_CHOICE_APPROVE, Reason: "changed my mind"}); err == nil {
		t.Fatal("a reviewed decision was reviewed again")
	}
}

// Self-approval through a client node's socket: a proposal naming one voter
// under UNANIMOUS or 1-of-1 is refused with FailedPrecondition naming the
// policy, before any vote is asked; once a policy operator sets a policy
// for the kind, the same terms pass the policy check.
func TestSelfApprovalIsRefusedBeforeFanOut(t *testing.T) {
	nodes := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := meshnodev1.NewQuorumServiceClient(nodes[2].conn(t))
	for name, rule := range map[string]*meshnodev1.QuorumRule{
		"unanimous of one": {Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS},
		"one of one":       {Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 1},
	} {
		_, err := q.Propose(ctx, &meshnodev1.ProposeRequest{Proposal: &meshnodev1.Proposal{Id: "self-" + rule.GetKind().String(), Kind: "payment.approve",
			Payload: []byte(`{"amount":1000000}`), Selection: &meshnodev1.VoterSelection{AgentIds: []string{"n3/me"}}, Rule: rule}})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "quorum policy") || !strings.Contains(err.Error(), "at least 4") {
			t.Errorf("%s: %v, want FailedPrecondition naming the policy and its 4 voters", name, err)
		}
	}
	if fams := scrapeSocket(t, nodes[2]); counterValue(fams["meshnode_quorum_refused_total"], "reason", "below_policy") < 2 {
		t.Errorf("meshnode_quorum_refused_total{reason=below_policy} does not count the two refusals: %v", fams["meshnode_quorum_refused_total"])
	}
	if _, err := meshnodev1.NewQuorumServiceClient(nodes[2].conn(t)).SetQuorumPolicy(ctx, &meshnodev1.SetQuorumPolicyRequest{
		Policy: &meshnodev1.QuorumPolicy{Kind: "payment.approve", MinVoters: 1, AllowSharedHosts: true, MinRule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 1}}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("an unsigned quorum policy: %v, want PermissionDenied", err)
	}
	if _, err := meshnodev1.NewQuorumServiceClient(nodes[0].operatorConn(t, nodes[0].dir)).SetQuorumPolicy(ctx, &meshnodev1.SetQuorumPolicyRequest{
		Policy: &meshnodev1.QuorumPolicy{Kind: "payment.approve", MinVoters: 1, AllowSharedHosts: true, MinRule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 1}}}); err != nil {
		t.Fatalf("a policy operator's quorum policy: %v", err)
	}
	waitFor(t, 10*time.Second, "the client replica applies the policy", func() bool {
		_, err := q.Propose(ctx, &meshnodev1.ProposeRequest{Proposal: &meshnodev1.Proposal{Id: "after-policy", Kind: "payment.approve",
			Payload: []byte(`{}`), Selection: &meshnodev1.VoterSelection{AgentIds: []string{"n3/me"}},
			Rule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 1}}})
		// Past the policy, the proposal fails only because n3/me does not exist.
		return status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "too few eligible voters")
	})
}

// counterValue is the value of the counter in fam whose label name is value
// (0 when absent).
func counterValue(fam *dto.MetricFamily, name, value string) float64 {
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name && l.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
