package quorum

import (
	"bytes"
	"errors"
	"fmt"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// KeyLookup finds an agent's registered vote key and node, for example in
// the registry (Raft state) or in an exported snapshot of it. It returns an
// error for an unknown agent or one without a vote key. The returned
// Voter's AgentID may be left empty.
type KeyLookup interface {
	Voter(agentID string) (Voter, error)
}

// KeyLookupFunc adapts a function to KeyLookup.
type KeyLookupFunc func(agentID string) (Voter, error)

// Voter calls f.
func (f KeyLookupFunc) Voter(agentID string) (Voter, error) { return f(agentID) }

// KeyMap is a KeyLookup over a fixed set of voters, keyed by agent id.
type KeyMap map[string]Voter

// Voter returns the voter registered under agentID.
func (m KeyMap) Voter(agentID string) (Voter, error) {
	v, ok := m[agentID]
	if !ok {
		return Voter{}, fmt.Errorf("agent %q has no registered vote key", agentID)
	}
	return v, nil
}

// NewKeyMap indexes voters by agent id.
func NewKeyMap(voters ...Voter) KeyMap {
	m := make(KeyMap, len(voters))
	for _, v := range voters {
		m[v.AgentID] = v
	}
	return m
}

// VerifyCertificateSignatures checks the votes inside cert against keys.
// It does not bind cert to a decision: it never sees the payload, the
// proposal or the policy, so a valid certificate of another proposal
// passes. To check a decision, use VerifyDecision (and the policy checks
// meshnode quorum verify runs). In detail: the
// electorate is valid for the rule (distinct hosts, registered nodes), and
// exactly threshold votes, sorted by voter id, each from a distinct member
// of the electorate, each for cert's cluster, proposal, payload digest,
// terms (kind, rule, electorate) and round, each signed by its agent's
// registered key, all choose cert's choice. Any change to a certificate,
// including adding, removing or reordering votes, makes it fail.
func VerifyCertificateSignatures(cert *meshnodev1.QuorumCertificate, keys KeyLookup) error {
	if err := verifyCertificate(cert, keys); err != nil {
		return fmt.Errorf("%w: proposal %q: %w", ErrInvalidCertificate, cert.GetProposalId(), err)
	}
	return nil
}

func verifyCertificate(cert *meshnodev1.QuorumCertificate, keys KeyLookup) error {
	if cert == nil {
		return errors.New("no certificate")
	}
	if c := cert.GetChoice(); c != meshnodev1.Choice_CHOICE_APPROVE && c != meshnodev1.Choice_CHOICE_REJECT {
		return fmt.Errorf("choice %s is not approve or reject", c)
	}
	el := cert.GetElectorate()
	if len(el) == 0 || len(el) > MaxVoters {
		return fmt.Errorf("electorate has %d voters, want 1-%d", len(el), MaxVoters)
	}
	voters := make([]Voter, len(el))
	for i, e := range el {
		v, err := keys.Voter(e.GetAgentId())
		if err != nil {
			return fmt.Errorf("electorate: %w", err)
		}
		if v.AgentID == "" {
			v.AgentID = e.GetAgentId()
		}
		if v.AgentID != e.GetAgentId() || v.Node != e.GetNode() {
			return fmt.Errorf("electorate: agent %q is on node %q, registered as %q on %q", e.GetAgentId(), e.GetNode(), v.AgentID, v.Node)
		}
		voters[i] = v
	}
	p := &meshnodev1.Proposal{
		Id:            cert.GetProposalId(),
		Kind:          cert.GetKind(),
		PayloadDigest: cert.GetPayloadDigest(),
		Rule:          cert.GetRule(),
		Round:         cert.GetRound(),
		Electorate:    el,
	}
	t, err := NewTally(cert.GetClusterId(), p, voters) // checks sorting, distinct hosts, threshold
	if err != nil {
		return err
	}
	if len(cert.GetVotes()) != t.threshold {
		return fmt.Errorf("%d votes, the %s rule with %d voters needs exactly %d", len(cert.GetVotes()), RuleKind(cert.GetRule()), len(el), t.threshold)
	}
	for i, v := range cert.GetVotes() {
		if i > 0 && cert.GetVotes()[i-1].GetVoterAgentId() >= v.GetVoterAgentId() {
			return errors.New("votes are not sorted by voter agent id")
		}
		if v.GetChoice() != cert.GetChoice() {
			return fmt.Errorf("vote by %q chooses %s, certificate says %s", v.GetVoterAgentId(), v.GetChoice(), cert.GetChoice())
		}
		if err := t.Add(v); err != nil {
			return err
		}
	}
	if o, c := t.Outcome(); o != OutcomeDecided || c != cert.GetChoice() {
		return fmt.Errorf("votes do not decide %s", cert.GetChoice()) // unreachable if the checks above hold
	}
	return nil
}

// VerifyEquivocation checks that ev convicts its agent: two votes by
// ev.agent_id, both signed by its registered key, for the same cluster,
// proposal, round, payload and terms, with different choices. Consensus
// should flag an agent only on evidence that verifies.
func VerifyEquivocation(ev *meshnodev1.EquivocationEvidence, keys KeyLookup) error {
	if err := verifyEquivocation(ev, keys); err != nil {
		return fmt.Errorf("%w: agent %q: %w", ErrInvalidEvidence, ev.GetAgentId(), err)
	}
	return nil
}

func verifyEquivocation(ev *meshnodev1.EquivocationEvidence, keys KeyLookup) error {
	a, b := ev.GetFirst(), ev.GetSecond()
	switch {
	case a == nil || b == nil:
		return errors.New("evidence needs two votes")
	case a.GetVoterAgentId() != ev.GetAgentId() || b.GetVoterAgentId() != ev.GetAgentId():
		return fmt.Errorf("votes are by %q and %q", a.GetVoterAgentId(), b.GetVoterAgentId())
	case a.GetClusterId() != b.GetClusterId() || a.GetProposalId() != b.GetProposalId() || a.GetRound() != b.GetRound() ||
		!bytes.Equal(a.GetPayloadDigest(), b.GetPayloadDigest()) || !bytes.Equal(a.GetTermsDigest(), b.GetTermsDigest()):
		return errors.New("the votes are not on the same proposal, round, payload and terms")
	case !validChoice(a.GetChoice()) || !validChoice(b.GetChoice()):
		return fmt.Errorf("choices %d and %d are not both approve, reject or abstain", a.GetChoice(), b.GetChoice())
	case a.GetChoice() == b.GetChoice():
		return fmt.Errorf("both votes choose %s", a.GetChoice())
	}
	v, err := keys.Voter(ev.GetAgentId())
	if err != nil {
		return err
	}
	for _, vote := range []*meshnodev1.Vote{a, b} {
		if vote.GetVoterNode() != v.Node {
			return fmt.Errorf("vote claims node %q, agent is registered on %q", vote.GetVoterNode(), v.Node)
		}
		if err := VerifyVote(v.PublicKey, vote); err != nil {
			return err
		}
	}
	return nil
}

// NewEvidence returns the evidence that a and b convict their agent, if they
// do by their content: same agent, cluster, proposal, round, payload and
// terms, different valid choices. It does not check signatures; run
// VerifyEquivocation before acting on it. A node that receives two
// different votes from one agent for one vote request (QuorumService.Vote
// called twice) uses it to report the agent.
func NewEvidence(a, b *meshnodev1.Vote) (*meshnodev1.EquivocationEvidence, error) {
	ev := &meshnodev1.EquivocationEvidence{AgentId: a.GetVoterAgentId(), First: a, Second: b}
	if err := verifyEquivocation(ev, KeyLookupFunc(func(string) (Voter, error) { return Voter{}, errSkipKeys })); err != nil && !errors.Is(err, errSkipKeys) {
		return nil, fmt.Errorf("%w: agent %q: %w", ErrInvalidEvidence, a.GetVoterAgentId(), err)
	}
	return ev, nil
}

// errSkipKeys stops verifyEquivocation before the signature checks.
var errSkipKeys = errors.New("signatures not checked")
