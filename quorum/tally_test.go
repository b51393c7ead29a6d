package quorum

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// scenario is one tally situation: the votes as they arrive and what the
// tally must make of them.
type scenario struct {
	name        string
	n           int
	rule        *meshnodev1.QuorumRule
	votes       func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote
	outcome     Outcome
	choice      meshnodev1.Choice
	discarded   []error  // reasons, in arrival order
	equivocator []string // agent ids convicted
}

// honest returns valid votes with choice c by ms[i] for each i in idx.
func honest(ms []member, p *meshnodev1.Proposal, c meshnodev1.Choice, idx ...int) []*meshnodev1.Vote {
	var vs []*meshnodev1.Vote
	for _, i := range idx {
		vs = append(vs, ms[i].vote(p, c))
	}
	return vs
}

func otherProposal(p *meshnodev1.Proposal, mutate func(*meshnodev1.Proposal)) *meshnodev1.Proposal {
	q := proto.Clone(p).(*meshnodev1.Proposal)
	mutate(q)
	return q
}

var scenarios = []scenario{
	{name: "all honest approve", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return honest(ms, p, approve, 0, 1, 2, 3)
		},
		outcome: OutcomeDecided, choice: approve},
	{name: "honest reject", n: 4,
		votes:   func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote { return honest(ms, p, reject, 3, 1, 0) },
		outcome: OutcomeDecided, choice: reject},
	{name: "one liar of 4 (f=1)", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return append(honest(ms, p, reject, 0), honest(ms, p, approve, 1, 2, 3)...)
		},
		outcome: OutcomeDecided, choice: approve},
	{name: "one silent of 4", n: 4,
		votes:   func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote { return honest(ms, p, approve, 0, 2, 3) },
		outcome: OutcomeDecided, choice: approve},
	{name: "two silent of 4 is not yet a quorum", n: 4,
		votes:   func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote { return honest(ms, p, approve, 0, 2) },
		outcome: OutcomePending},
	{name: "two liars of 4 (more than f): no certificate", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return append(honest(ms, p, reject, 0, 1), honest(ms, p, approve, 2, 3)...)
		},
		outcome: OutcomeImpossible},
	{name: "two liars of 7 (f=2)", n: 7,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return append(honest(ms, p, reject, 5, 6), honest(ms, p, approve, 0, 1, 2, 3, 4)...)
		},
		outcome: OutcomeDecided, choice: approve},
	{name: "three liars of 7 (more than f)", n: 7,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return append(honest(ms, p, reject, 4, 5, 6), honest(ms, p, approve, 0, 1, 2, 3)...)
		},
		outcome: OutcomeImpossible},
	{name: "abstentions make a quorum impossible", n: 4,
		votes:   func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote { return honest(ms, p, abstain, 0, 1) },
		outcome: OutcomeImpossible},
	{name: "equivocator among honest majority", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return append(honest(ms, p, approve, 3, 0, 1, 2), ms[3].vote(p, reject))
		},
		outcome: OutcomeDecided, choice: approve, discarded: []error{ErrEquivocation}, equivocator: []string{"n03/voter"}},
	{name: "equivocator's votes stop counting", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			vs := honest(ms, p, approve, 0, 1, 2)
			return append(vs, ms[2].vote(p, reject), ms[2].vote(p, abstain))
		},
		outcome: OutcomePending, discarded: []error{ErrEquivocation, ErrEquivocation}, equivocator: []string{"n02/voter"}},
	{name: "duplicate counts once", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return honest(ms, p, approve, 0, 1, 1, 0)
		},
		outcome: OutcomePending, discarded: []error{ErrDuplicateVote, ErrDuplicateVote}},
	{name: "forged with the wrong key", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			outsider := newMember("n03/voter", "n03") // same id, its own key
			outsider.priv = newMember("mallory", "n03").priv
			return append(honest(ms, p, reject, 0, 1), outsider.vote(p, reject))
		},
		outcome: OutcomePending, discarded: []error{ErrBadSignature}},
	{name: "forged under another agent's id", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			forged := NewVote(testCluster, p, reject, "", ms[0].AgentID, ms[0].Node, ms[3].priv)
			return append([]*meshnodev1.Vote{forged}, honest(ms, p, approve, 0, 1, 2)...)
		},
		outcome: OutcomeDecided, choice: approve, discarded: []error{ErrBadSignature}},
	{name: "compromised node injects votes for agents on other nodes", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			// n03 is compromised: it holds n03/voter's key and nothing else.
			var vs []*meshnodev1.Vote
			for _, victim := range ms[:3] {
				vs = append(vs,
					NewVote(testCluster, p, reject, "", victim.AgentID, victim.Node, ms[3].priv), // victim's node
					NewVote(testCluster, p, reject, "", victim.AgentID, "n03", ms[3].priv))       // its own node
			}
			vs = append(vs, ms[3].vote(p, reject))
			return append(vs, honest(ms, p, approve, 0, 1, 2)...)
		},
		outcome: OutcomeDecided, choice: approve,
		discarded: []error{ErrBadSignature, ErrWrongNode, ErrBadSignature, ErrWrongNode, ErrBadSignature, ErrWrongNode}},
	{name: "replay from another proposal", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			old := otherProposal(p, func(q *meshnodev1.Proposal) { q.Id = "p-old" })
			return append(honest(ms, old, approve, 0, 1, 2), honest(ms, p, reject, 3)...)
		},
		outcome: OutcomePending, discarded: []error{ErrOtherProposal, ErrOtherProposal, ErrOtherProposal}},
	{name: "vote on a different payload digest", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			other := otherProposal(p, func(q *meshnodev1.Proposal) { q.Payload = []byte(`{"amount": 99999}`) })
			return append(honest(ms, other, approve, 0), honest(ms, p, approve, 1, 2)...)
		},
		outcome: OutcomePending, discarded: []error{ErrPayloadMismatch}},
	{name: "vote on other terms (a smaller electorate)", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			other := otherProposal(p, func(q *meshnodev1.Proposal) { q.Electorate = q.Electorate[:3] })
			return append(honest(ms, other, approve, 0), honest(ms, p, approve, 1, 2)...)
		},
		outcome: OutcomePending, discarded: []error{ErrTermsMismatch}},
	{name: "other cluster and other round", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			v1 := NewVote("other-cluster", p, approve, "", ms[0].AgentID, ms[0].Node, ms[0].priv)
			v2 := ms[1].vote(otherProposal(p, func(q *meshnodev1.Proposal) { q.Round = 1 }), approve)
			return append([]*meshnodev1.Vote{v1, v2}, honest(ms, p, approve, 2, 3)...)
		},
		outcome: OutcomePending, discarded: []error{ErrOtherCluster, ErrOtherRound}},
	{name: "voter outside the electorate", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			outsider := newMember("n09/voter", "n09")
			return append(honest([]member{outsider}, p, approve, 0), honest(ms, p, approve, 0, 1)...)
		},
		outcome: OutcomePending, discarded: []error{ErrNotEligible}},
	{name: "malformed votes", n: 4,
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			unspecified := ms[0].vote(p, meshnodev1.Choice_CHOICE_UNSPECIFIED)
			return []*meshnodev1.Vote{nil, unspecified, {}}
		},
		outcome: OutcomePending, discarded: []error{ErrMalformedVote, ErrMalformedVote, ErrMalformedVote}},
	{name: "2 of 3", n: 3, rule: kOfN(2),
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return append(honest(ms, p, reject, 0), honest(ms, p, approve, 1, 2)...)
		},
		outcome: OutcomeDecided, choice: approve},
	{name: "unanimous broken by one", n: 3, rule: unanimous(),
		votes: func(ms []member, p *meshnodev1.Proposal) []*meshnodev1.Vote {
			return append(honest(ms, p, approve, 0, 1), honest(ms, p, abstain, 2)...)
		},
		outcome: OutcomeImpossible},
}

func TestTallyScenarios(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			ms := newMembers(sc.n)
			p := newProposal("p1", sc.rule, ms)
			votes := sc.votes(ms, p)
			res, err := TallyVotes(testCluster, p, votersOf(ms), votes)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != sc.outcome || (sc.outcome == OutcomeDecided && res.Choice != sc.choice) {
				t.Fatalf("outcome %s %s, want %s %s (approve %d reject %d abstain %d)", res.Outcome, res.Choice, sc.outcome, sc.choice, res.Approve, res.Reject, res.Abstain)
			}
			if len(res.Discarded) != len(sc.discarded) {
				t.Fatalf("%d votes discarded, want %d: %v", len(res.Discarded), len(sc.discarded), res.Discarded)
			}
			for i, d := range res.Discarded {
				if !errors.Is(d.Err, sc.discarded[i]) {
					t.Errorf("discard %d: %v, want %v", i, d.Err, sc.discarded[i])
				}
			}
			var convicted []string
			for _, ev := range res.Equivocations {
				convicted = append(convicted, ev.GetAgentId())
				if err := VerifyEquivocation(ev, NewKeyMap(votersOf(ms)...)); err != nil {
					t.Errorf("evidence does not verify: %v", err)
				}
			}
			if !slices.Equal(convicted, sc.equivocator) {
				t.Errorf("equivocators %v, want %v", convicted, sc.equivocator)
			}
			checkCertificate(t, p, ms, votes, res)
		})
	}
}

// checkCertificate checks that a decided tally issues a certificate that
// verifies, and an undecided one issues none.
func checkCertificate(t *testing.T, p *meshnodev1.Proposal, ms []member, votes []*meshnodev1.Vote, res Result) {
	t.Helper()
	tl := mustTally(t, p, ms)
	for _, v := range votes {
		_ = tl.Add(v)
	}
	cert, err := tl.Certificate()
	if res.Outcome != OutcomeDecided {
		if err == nil {
			t.Fatalf("%s tally issued a certificate", res.Outcome)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyCertificateSignatures(cert, NewKeyMap(votersOf(ms)...)); err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	if cert.GetChoice() != res.Choice || len(cert.GetVotes()) != res.Threshold {
		t.Fatalf("certificate for %s with %d votes, want %s with %d", cert.GetChoice(), len(cert.GetVotes()), res.Choice, res.Threshold)
	}
}

func TestNewTallyRefusesBadElectorates(t *testing.T) {
	ms := newMembers(4)
	shared := newMembers(4)
	shared[3] = newMember("n00/second", "n00")
	tests := []struct {
		name   string
		p      *meshnodev1.Proposal
		voters []Voter
		want   error
	}{
		{"too few distinct hosts", newProposal("p1", bft(), shared), votersOf(shared), ErrTooFewHosts},
		{"electorate differs from voters", newProposal("p1", bft(), ms), votersOf(newMembers(5)), ErrInvalidElectorate},
		{"voter on another node than the electorate says", newProposal("p1", bft(), ms), func() []Voter {
			vs := votersOf(ms)
			vs[0].Node = "n99"
			return vs
		}(), ErrInvalidElectorate},
		{"unsorted electorate", func() *meshnodev1.Proposal {
			p := newProposal("p1", bft(), ms)
			p.Electorate[0], p.Electorate[1] = p.Electorate[1], p.Electorate[0]
			return p
		}(), votersOf(ms), ErrInvalidElectorate},
		{"no payload digest", func() *meshnodev1.Proposal {
			p := newProposal("p1", bft(), ms)
			p.PayloadDigest = nil
			return p
		}(), votersOf(ms), ErrInvalidProposal},
		{"3 voters cannot be BFT", newProposal("p1", bft(), ms[:3]), votersOf(ms[:3]), ErrInvalidProposal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewTally(testCluster, tt.p, tt.voters); !errors.Is(err, tt.want) {
				t.Fatalf("NewTally = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTallyResultCountsAndOrder(t *testing.T) {
	ms := newMembers(7)
	p := newProposal("p1", bft(), ms)
	tl := mustTally(t, p, ms)
	for _, v := range []*meshnodev1.Vote{ms[4].vote(p, reject), ms[1].vote(p, abstain), ms[2].vote(p, approve)} {
		if err := tl.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	res := tl.Result()
	if res.Approve != 1 || res.Reject != 1 || res.Abstain != 1 || res.Silent != 4 || res.Threshold != 5 || res.Electorate != 7 {
		t.Fatalf("counts %+v", res)
	}
	var order []string
	for _, v := range res.Counted {
		order = append(order, v.GetVoterAgentId())
	}
	if !slices.Equal(order, []string{"n04/voter", "n01/voter", "n02/voter"}) {
		t.Fatalf("counted in order %v, want arrival order", order)
	}
}

// Votes checked concurrently and added in arrival order count exactly as
// Add counts them; a forged vote fails its check; a verdict from another
// tally is refused.
func TestCheckConcurrentlyThenAdd(t *testing.T) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	forged := ms[3].vote(p, approve)
	forged.Signature = append([]byte(nil), forged.GetSignature()...)
	forged.Signature[0] ^= 1
	votes := []*meshnodev1.Vote{ms[0].vote(p, approve), ms[1].vote(p, approve), forged, ms[2].vote(p, approve)}

	want := mustTally(t, p, ms)
	for _, v := range votes {
		want.Add(v)
	}
	got := mustTally(t, p, ms)
	checked := make([]Checked, len(votes))
	var wg sync.WaitGroup
	for i, v := range votes {
		wg.Go(func() { checked[i] = got.Check(v) })
	}
	wg.Wait()
	for _, c := range checked {
		got.AddChecked(c)
	}
	w, g := want.Result(), got.Result()
	if g.Outcome != OutcomeDecided || g.Approve != w.Approve || len(g.Discarded) != 1 || len(w.Discarded) != 1 {
		t.Fatalf("checked then added: %+v; added: %+v", g, w)
	}
	if !errors.Is(g.Discarded[0].Err, ErrBadSignature) {
		t.Fatalf("the forged vote was discarded for %v, want a bad signature", g.Discarded[0].Err)
	}

	other := mustTally(t, p, ms)
	if err := other.AddChecked(got.Check(ms[0].vote(p, approve))); err == nil {
		t.Fatal("a verdict from another tally was counted")
	}
}
