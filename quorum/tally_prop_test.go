package quorum

import (
	"math/rand/v2"
	"slices"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// behaviour is what one voter does in a generated run.
type behaviour int

const (
	silent behaviour = iota
	votesApprove
	votesReject
	votesAbstain
	equivocates  // approve and reject
	forgesKey    // signs with a key that is not its registered one
	replays      // sends its valid vote from another proposal
	otherPayload // signs another payload digest
	duplicates   // sends the same valid approve twice
	numBehaviours
)

// referenceTally is the obviously-correct model the Tally is checked
// against: it works from what each voter did, not from the votes.
func referenceTally(rule *meshnodev1.QuorumRule, bs []behaviour) (Outcome, meshnodev1.Choice, []int) {
	n := len(bs)
	var q int
	switch RuleKind(rule) {
	case meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT:
		f := 0
		for 3*(f+1)+1 <= n {
			f++
		}
		for q = 1; 2*q-n < f+1; q++ { // smallest quorum whose pairs share f+1 voters
		}
	case meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N:
		q = int(rule.GetK())
	default:
		q = n
	}
	counts := map[behaviour]int{}
	notYet := 0
	var equivocators []int
	for i, b := range bs {
		switch b {
		case votesApprove, votesReject, votesAbstain:
			counts[b]++
		case duplicates:
			counts[votesApprove]++
		case equivocates:
			equivocators = append(equivocators, i)
		default:
			notYet++ // silent, or only invalid votes so far: may still vote
		}
	}
	switch {
	case counts[votesApprove] >= q:
		return OutcomeDecided, approve, equivocators
	case counts[votesReject] >= q:
		return OutcomeDecided, reject, equivocators
	case max(counts[votesApprove], counts[votesReject])+notYet < q:
		return OutcomeImpossible, 0, equivocators
	}
	return OutcomePending, 0, equivocators
}

// votesFor produces the votes voters with behaviours bs send, shuffled.
func votesFor(rng *rand.Rand, ms []member, p *meshnodev1.Proposal, bs []behaviour) []*meshnodev1.Vote {
	replayed := otherProposal(p, func(q *meshnodev1.Proposal) { q.Id = "replayed" })
	otherP := otherProposal(p, func(q *meshnodev1.Proposal) { q.Payload = []byte("other") })
	var vs []*meshnodev1.Vote
	for i, b := range bs {
		m := ms[i]
		switch b {
		case votesApprove:
			vs = append(vs, m.vote(p, approve))
		case votesReject:
			vs = append(vs, m.vote(p, reject))
		case votesAbstain:
			vs = append(vs, m.vote(p, abstain))
		case equivocates:
			vs = append(vs, m.vote(p, approve), m.vote(p, reject))
		case forgesKey:
			_, wrong := testKey("wrong/" + m.AgentID)
			vs = append(vs, NewVote(testCluster, p, reject, "", m.AgentID, m.Node, wrong))
		case replays:
			vs = append(vs, m.vote(replayed, reject))
		case otherPayload:
			vs = append(vs, m.vote(otherP, reject))
		case duplicates:
			v := m.vote(p, approve)
			vs = append(vs, v, v)
		}
	}
	rng.Shuffle(len(vs), func(i, j int) { vs[i], vs[j] = vs[j], vs[i] })
	return vs
}

// randomRule returns a valid rule for n voters.
func randomRule(rng *rand.Rand, n int) *meshnodev1.QuorumRule {
	switch rng.IntN(3) {
	case 0:
		if n >= 4 {
			return bft()
		}
		return unanimous()
	case 1:
		return kOfN(uint32(n/2 + 1 + rng.IntN(n-n/2)))
	}
	return unanimous()
}

var propMembers = newMembers(13)

// The tally agrees with the reference over random behaviour assignments,
// rules and arrival orders.
func TestTallyMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	iterations := 1500
	if testing.Short() {
		iterations = 200
	}
	for it := range iterations {
		n := 1 + rng.IntN(10)
		ms := propMembers[:n]
		rule := randomRule(rng, n)
		p := newProposal("p1", rule, ms)
		bs := make([]behaviour, n)
		for i := range bs {
			bs[i] = behaviour(rng.IntN(int(numBehaviours)))
		}
		votes := votesFor(rng, ms, p, bs)
		res, err := TallyVotes(testCluster, p, votersOf(ms), votes)
		if err != nil {
			t.Fatalf("iteration %d: %v", it, err)
		}
		wantO, wantC, wantEq := referenceTally(rule, bs)
		if res.Outcome != wantO || res.Choice != wantC {
			t.Fatalf("iteration %d: rule %v, behaviours %v: tally %s %s, reference %s %s", it, rule, bs, res.Outcome, res.Choice, wantO, wantC)
		}
		var gotEq []int
		for _, ev := range res.Equivocations {
			gotEq = append(gotEq, slices.IndexFunc(ms, func(m member) bool { return m.AgentID == ev.GetAgentId() }))
		}
		slices.Sort(gotEq)
		if !slices.Equal(gotEq, wantEq) {
			t.Fatalf("iteration %d: behaviours %v: equivocators %v, want %v", it, bs, gotEq, wantEq)
		}
		if res.Outcome == OutcomeDecided {
			tl := mustTally(t, p, ms)
			for _, v := range votes {
				_ = tl.Add(v)
			}
			cert, err := tl.Certificate()
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyCertificateSignatures(cert, NewKeyMap(votersOf(ms)...)); err != nil {
				t.Fatalf("iteration %d: certificate does not verify: %v", it, err)
			}
		}
	}
}

// With n = 3f+1 and at most f Byzantine voters doing anything, once every
// honest voter has voted the decision is the honest choice. With more than
// f, a choice the honest voters did not make is decided only if the
// Byzantine voters alone reach the threshold.
func TestBFTSafety(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	byzantine := []behaviour{silent, votesApprove, votesReject, votesAbstain, equivocates, forgesKey, replays, otherPayload}
	for it := range 600 {
		f := 1 + rng.IntN(4)
		n := 3*f + 1
		ms := propMembers[:n]
		p := newProposal("p1", bft(), ms)
		honestChoice := []behaviour{votesApprove, votesReject}[rng.IntN(2)]
		b := rng.IntN(n + 1) // number of Byzantine voters
		bs := make([]behaviour, n)
		for i, idx := range rng.Perm(n) {
			bs[idx] = honestChoice
			if i < b {
				bs[idx] = byzantine[rng.IntN(len(byzantine))]
			}
		}
		res, err := TallyVotes(testCluster, p, votersOf(ms), votesFor(rng, ms, p, bs))
		if err != nil {
			t.Fatal(err)
		}
		want := approve
		if honestChoice == votesReject {
			want = reject
		}
		if b <= f && (res.Outcome != OutcomeDecided || res.Choice != want) {
			t.Fatalf("iteration %d: f=%d, %d Byzantine %v: %s %s, want decided %s", it, f, b, bs, res.Outcome, res.Choice, want)
		}
		if res.Outcome == OutcomeDecided && res.Choice != want && b < res.Threshold {
			t.Fatalf("iteration %d: %d Byzantine voters (< threshold %d) decided %s against the honest %s", it, b, res.Threshold, res.Choice, want)
		}
	}
}
