package quorum

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Outcome is where a tally stands.
type Outcome int

const (
	// OutcomePending: no choice has reached the threshold yet, and one still can.
	OutcomePending Outcome = iota
	// OutcomeDecided: Result.Choice reached the threshold.
	OutcomeDecided
	// OutcomeImpossible: no choice can reach the threshold any more, even if
	// every voter that has not voted yet agrees.
	OutcomeImpossible
)

func (o Outcome) String() string {
	switch o {
	case OutcomePending:
		return "pending"
	case OutcomeDecided:
		return "decided"
	case OutcomeImpossible:
		return "impossible"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Discard is a vote the tally did not count, and why (wrapping one of the
// ErrXxx vote sentinels).
type Discard struct {
	Vote *meshnodev1.Vote
	Err  error
}

// Result is a tally's state.
type Result struct {
	Outcome Outcome
	// Choice is the decided choice when Outcome is OutcomeDecided.
	Choice meshnodev1.Choice
	// Threshold is how many matching votes decide; Electorate is n.
	Threshold, Electorate int
	// Votes counted per choice, from agents that did not equivocate.
	Approve, Reject, Abstain int
	// Silent is the number of voters without a valid vote yet.
	Silent int
	// Counted holds the counted votes, one per agent, in arrival order.
	Counted []*meshnodev1.Vote
	// Equivocations holds one piece of evidence per equivocating agent.
	Equivocations []*meshnodev1.EquivocationEvidence
	// Discarded holds every vote that was not counted, in arrival order.
	Discarded []Discard
}

// Tally counts signed votes on one proposal. It is pure: no I/O, no clock,
// no goroutines; the result depends only on its inputs and the order of
// Add calls (which duplicate is kept, which vote is "first" in evidence).
// Each vote's signature is verified once, when it is added (or checked). A
// Tally is not safe for concurrent use, except Check.
type Tally struct {
	cluster   string
	proposal  *meshnodev1.Proposal
	terms     []byte
	threshold int
	index     map[string]int
	voters    []Voter
	votes     []*meshnodev1.Vote // per voter: first valid vote
	equivoc   []bool             // per voter
	order     []int              // voter indexes by arrival of their first valid vote
	counts    [4]int             // indexed by Choice
	voted     int
	evidence  []*meshnodev1.EquivocationEvidence
	discarded []Discard
}

// NewTally starts a tally of votes on p in cluster clusterID by voters, who
// must be exactly p's electorate (ids and nodes) with their registered keys.
// It fails if the electorate cannot decide under p's rule.
func NewTally(clusterID string, p *meshnodev1.Proposal, voters []Voter) (*Tally, error) {
	if p.GetId() == "" || len(p.GetPayloadDigest()) != DigestSize {
		return nil, fmt.Errorf("%w: proposal %q: id and a %d-byte payload_digest are required", ErrInvalidProposal, p.GetId(), DigestSize)
	}
	if err := CheckElectorate(p.GetRule(), voters); err != nil {
		return nil, fmt.Errorf("proposal %q: %w", p.GetId(), err)
	}
	q, _ := Threshold(p.GetRule(), len(voters)) // checked by CheckElectorate
	t := &Tally{
		cluster:   clusterID,
		proposal:  p,
		terms:     ProposalTerms(p),
		threshold: q,
		index:     make(map[string]int, len(voters)),
		voters:    voters,
		votes:     make([]*meshnodev1.Vote, len(voters)),
		equivoc:   make([]bool, len(voters)),
	}
	for i, v := range voters {
		t.index[v.AgentID] = i
	}
	el := p.GetElectorate()
	if len(el) != len(voters) {
		return nil, fmt.Errorf("%w: proposal %q lists %d voters in its electorate, %d given", ErrInvalidElectorate, p.GetId(), len(el), len(voters))
	}
	for i, e := range el {
		j, ok := t.index[e.GetAgentId()]
		if !ok || voters[j].Node != e.GetNode() {
			return nil, fmt.Errorf("%w: proposal %q: electorate entry %q on %q has no matching voter", ErrInvalidElectorate, p.GetId(), e.GetAgentId(), e.GetNode())
		}
		if i > 0 && el[i-1].GetAgentId() >= e.GetAgentId() {
			return nil, fmt.Errorf("%w: proposal %q: electorate is not sorted by agent id", ErrInvalidElectorate, p.GetId())
		}
	}
	return t, nil
}

// Add offers one vote. It returns nil if the vote counts, or the reason it
// was discarded (also recorded in Result.Discarded). A second valid vote
// with a different choice from the same agent is equivocation: the agent's
// votes stop counting and the pair is kept as evidence.
func (t *Tally) Add(v *meshnodev1.Vote) error {
	return t.AddChecked(t.Check(v))
}

// Checked is a vote that went through Check, with its verdict.
type Checked struct {
	tally *Tally
	vote  *meshnodev1.Vote
	voter int
	err   error
}

// Check validates v against the proposal and its voter's registered key:
// the expensive half of Add (an ed25519 verification). It reads only what
// NewTally set, so it is safe to call concurrently with everything else: a
// coordinator verifies each vote on the goroutine that received it, and
// votes arriving together are not verified one after another.
func (t *Tally) Check(v *meshnodev1.Vote) Checked {
	i, err := t.check(v)
	return Checked{tally: t, vote: v, voter: i, err: err}
}

// AddChecked is Add for a vote this Tally has checked: it counts the vote or
// records why it was discarded, as Add does.
func (t *Tally) AddChecked(c Checked) error {
	err := c.err
	switch {
	case c.tally != t:
		err = fmt.Errorf("%w: vote was checked by another tally", ErrMalformedVote)
	case err == nil:
		err = t.record(c.voter, c.vote)
	}
	if err != nil {
		t.discarded = append(t.discarded, Discard{Vote: c.vote, Err: err})
	}
	return err
}

// check validates v against the proposal and the voter's key; i is the
// voter's index.
func (t *Tally) check(v *meshnodev1.Vote) (int, error) {
	id := v.GetVoterAgentId()
	switch c := v.GetChoice(); {
	case v == nil:
		return 0, fmt.Errorf("%w: nil vote", ErrMalformedVote)
	case !validChoice(c):
		return 0, fmt.Errorf("%w: voter %q: choice %d is not approve, reject or abstain", ErrMalformedVote, id, c)
	case len(v.GetReason()) > MaxReasonBytes:
		return 0, fmt.Errorf("%w: voter %q: reason is %d bytes, max %d", ErrMalformedVote, id, len(v.GetReason()), MaxReasonBytes)
	}
	i, ok := t.index[id]
	switch {
	case !ok:
		return 0, fmt.Errorf("%w: %q, proposal %q", ErrNotEligible, id, t.proposal.GetId())
	case v.GetVoterNode() != t.voters[i].Node:
		return 0, fmt.Errorf("%w: %q claims node %q, registered on %q", ErrWrongNode, id, v.GetVoterNode(), t.voters[i].Node)
	case v.GetClusterId() != t.cluster:
		return 0, fmt.Errorf("%w: voter %q: cluster %q, want %q", ErrOtherCluster, id, v.GetClusterId(), t.cluster)
	case v.GetProposalId() != t.proposal.GetId():
		return 0, fmt.Errorf("%w: voter %q: proposal %q, want %q", ErrOtherProposal, id, v.GetProposalId(), t.proposal.GetId())
	case v.GetRound() != t.proposal.GetRound():
		return 0, fmt.Errorf("%w: voter %q: round %d, want %d", ErrOtherRound, id, v.GetRound(), t.proposal.GetRound())
	case !bytes.Equal(v.GetPayloadDigest(), t.proposal.GetPayloadDigest()):
		return 0, fmt.Errorf("%w: voter %q, proposal %q", ErrPayloadMismatch, id, t.proposal.GetId())
	case !bytes.Equal(v.GetTermsDigest(), t.terms):
		return 0, fmt.Errorf("%w: voter %q, proposal %q", ErrTermsMismatch, id, t.proposal.GetId())
	}
	if err := VerifyVote(t.voters[i].PublicKey, v); err != nil {
		return 0, err
	}
	return i, nil
}

// record counts a verified vote by voter i, or detects a duplicate or an
// equivocation.
func (t *Tally) record(i int, v *meshnodev1.Vote) error {
	id := t.voters[i].AgentID
	prev := t.votes[i]
	switch {
	case t.equivoc[i]:
		return fmt.Errorf("%w: %q already convicted on proposal %q", ErrEquivocation, id, t.proposal.GetId())
	case prev == nil:
		t.votes[i] = v
		t.counts[v.GetChoice()]++
		t.voted++
		t.order = append(t.order, i)
		return nil
	case prev.GetChoice() == v.GetChoice():
		return fmt.Errorf("%w: %q on proposal %q", ErrDuplicateVote, id, t.proposal.GetId())
	}
	t.equivoc[i] = true
	t.counts[prev.GetChoice()]--
	t.evidence = append(t.evidence, &meshnodev1.EquivocationEvidence{AgentId: id, First: prev, Second: v})
	return fmt.Errorf("%w: %q voted %s and %s on proposal %q", ErrEquivocation, id, prev.GetChoice(), v.GetChoice(), t.proposal.GetId())
}

// Outcome returns where the tally stands and, if decided, the choice.
func (t *Tally) Outcome() (Outcome, meshnodev1.Choice) {
	approve, reject := t.counts[meshnodev1.Choice_CHOICE_APPROVE], t.counts[meshnodev1.Choice_CHOICE_REJECT]
	switch {
	case approve >= t.threshold:
		return OutcomeDecided, meshnodev1.Choice_CHOICE_APPROVE
	case reject >= t.threshold:
		return OutcomeDecided, meshnodev1.Choice_CHOICE_REJECT
	case max(approve, reject)+len(t.voters)-t.voted < t.threshold:
		return OutcomeImpossible, meshnodev1.Choice_CHOICE_UNSPECIFIED
	}
	return OutcomePending, meshnodev1.Choice_CHOICE_UNSPECIFIED
}

// Result returns a snapshot of the tally.
func (t *Tally) Result() Result {
	o, c := t.Outcome()
	r := Result{
		Outcome:       o,
		Choice:        c,
		Threshold:     t.threshold,
		Electorate:    len(t.voters),
		Approve:       t.counts[meshnodev1.Choice_CHOICE_APPROVE],
		Reject:        t.counts[meshnodev1.Choice_CHOICE_REJECT],
		Abstain:       t.counts[meshnodev1.Choice_CHOICE_ABSTAIN],
		Silent:        len(t.voters) - t.voted,
		Equivocations: slices.Clone(t.evidence),
		Discarded:     slices.Clone(t.discarded),
	}
	for _, i := range t.order {
		if !t.equivoc[i] {
			r.Counted = append(r.Counted, t.votes[i])
		}
	}
	return r
}

// Certificate returns the quorum certificate of a decided tally: exactly
// threshold votes for the decided choice, sorted by voter agent id (the
// lowest ids among those that agreed).
func (t *Tally) Certificate() (*meshnodev1.QuorumCertificate, error) {
	o, c := t.Outcome()
	if o != OutcomeDecided {
		return nil, fmt.Errorf("proposal %q is %s: only a decided tally has a certificate", t.proposal.GetId(), o)
	}
	var votes []*meshnodev1.Vote
	for i, v := range t.votes {
		if v != nil && !t.equivoc[i] && v.GetChoice() == c {
			votes = append(votes, v)
		}
	}
	slices.SortFunc(votes, func(a, b *meshnodev1.Vote) int { return strings.Compare(a.GetVoterAgentId(), b.GetVoterAgentId()) })
	p := t.proposal
	cert := &meshnodev1.QuorumCertificate{
		ClusterId:     t.cluster,
		ProposalId:    p.GetId(),
		Kind:          p.GetKind(),
		PayloadDigest: slices.Clone(p.GetPayloadDigest()),
		Rule:          proto.Clone(p.GetRule()).(*meshnodev1.QuorumRule),
		Round:         p.GetRound(),
		Choice:        c,
	}
	if p.GetRule() == nil {
		cert.Rule = nil
	}
	for _, e := range p.GetElectorate() {
		cert.Electorate = append(cert.Electorate, proto.Clone(e).(*meshnodev1.QuorumVoter))
	}
	for _, v := range votes[:t.threshold] {
		cert.Votes = append(cert.Votes, proto.Clone(v).(*meshnodev1.Vote))
	}
	return cert, nil
}

// TallyVotes tallies votes on p in one call: NewTally, then Add in order.
func TallyVotes(clusterID string, p *meshnodev1.Proposal, voters []Voter, votes []*meshnodev1.Vote) (Result, error) {
	t, err := NewTally(clusterID, p, voters)
	if err != nil {
		return Result{}, err
	}
	for _, v := range votes {
		_ = t.Add(v) // recorded in Result.Discarded
	}
	return t.Result(), nil
}

// validChoice reports whether c is a choice a vote may carry.
func validChoice(c meshnodev1.Choice) bool {
	return c == meshnodev1.Choice_CHOICE_APPROVE || c == meshnodev1.Choice_CHOICE_REJECT || c == meshnodev1.Choice_CHOICE_ABSTAIN
}
