package quorum

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestVerifyDecision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		d, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyDecision(testCluster, d, h.keys()); err != nil {
			t.Fatalf("committed decision: %v", err)
		}
		tampering := map[string]func(d *meshnodev1.Decision){
			"outcome":    func(d *meshnodev1.Decision) { d.Outcome = reject },
			"payload":    func(d *meshnodev1.Decision) { d.Proposal.Payload = []byte(`{"amount": 1}`) },
			"digest":     func(d *meshnodev1.Decision) { d.Proposal.PayloadDigest = PayloadDigest([]byte("x")) },
			"kind":       func(d *meshnodev1.Decision) { d.Proposal.Kind = "payment.refund" },
			"rule":       func(d *meshnodev1.Decision) { d.Proposal.Rule = unanimous() },
			"electorate": func(d *meshnodev1.Decision) { d.Proposal.Electorate[0].Node = "elsewhere" },
			"cert vote":  func(d *meshnodev1.Decision) { d.Certificate.Votes[0].Reason = "edited" },
			"bogus evidence": func(d *meshnodev1.Decision) {
				d.Equivocations = append(d.Equivocations, &meshnodev1.EquivocationEvidence{AgentId: d.Votes[0].GetVoterAgentId(), First: d.Votes[0], Second: d.Votes[0]})
			},
		}
		for name, tamper := range tampering {
			c := proto.Clone(d).(*meshnodev1.Decision)
			tamper(c)
			if err := VerifyDecision(testCluster, c, h.keys()); err == nil {
				t.Errorf("tampered decision (%s) verified", name)
			}
		}
		if err := VerifyDecision("other-cluster", d, h.keys()); !errors.Is(err, ErrInvalidCertificate) {
			t.Errorf("decision from another cluster: %v", err)
		}
		none := proto.Clone(d).(*meshnodev1.Decision)
		none.Status, none.Certificate = meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM, nil
		if err := VerifyDecision(testCluster, none, h.keys()); !errors.Is(err, ErrNoCertificate) {
			t.Errorf("no-quorum decision: %v, want ErrNoCertificate", err)
		}
	})
}

func TestCrossCheck(t *testing.T) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	a := &meshnodev1.Decision{Votes: honest(ms, p, approve, 0, 1, 2)}
	b := &meshnodev1.Decision{Votes: append(honest(ms, p, approve, 0, 2), ms[1].vote(p, reject), ms[3].vote(p, reject))}
	evs := CrossCheck(a, b)
	if len(evs) != 1 || evs[0].GetAgentId() != ms[1].AgentID {
		t.Fatalf("CrossCheck = %v, want evidence against %s only", evs, ms[1].AgentID)
	}
	if err := VerifyEquivocation(evs[0], NewKeyMap(votersOf(ms)...)); err != nil {
		t.Fatalf("cross-check evidence does not verify: %v", err)
	}
	other := otherProposal(p, func(q *meshnodev1.Proposal) { q.Round = 1 })
	if evs := CrossCheck(a, &meshnodev1.Decision{Votes: []*meshnodev1.Vote{ms[1].vote(other, reject)}}); len(evs) != 0 {
		t.Fatalf("votes in different rounds reported as equivocation: %v", evs)
	}
}
