package quorum

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// decidedCert returns a certificate on which ms[0..2] of 4 (or 7) approved.
func decidedCert(t *testing.T, ms []member) (*meshnodev1.QuorumCertificate, *meshnodev1.Proposal) {
	t.Helper()
	p := newProposal("p1", bft(), ms)
	tl := mustTally(t, p, ms)
	for _, m := range ms {
		_ = tl.Add(m.vote(p, approve))
	}
	cert, err := tl.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return cert, p
}

func TestVerifyCertificate(t *testing.T) {
	ms := newMembers(4)
	keys := NewKeyMap(votersOf(ms)...)
	cert, p := decidedCert(t, ms)
	if err := VerifyCertificateSignatures(cert, keys); err != nil {
		t.Fatalf("fresh certificate: %v", err)
	}
	if len(cert.GetVotes()) != 3 {
		t.Fatalf("certificate has %d votes, want exactly the threshold 3", len(cert.GetVotes()))
	}
	tampering := map[string]func(c *meshnodev1.QuorumCertificate){
		"choice":         func(c *meshnodev1.QuorumCertificate) { c.Choice = reject },
		"choice abstain": func(c *meshnodev1.QuorumCertificate) { c.Choice = abstain },
		"vote choice":    func(c *meshnodev1.QuorumCertificate) { c.Votes[1].Choice = reject },
		"vote reason":    func(c *meshnodev1.QuorumCertificate) { c.Votes[0].Reason = "edited" },
		"vote signature": func(c *meshnodev1.QuorumCertificate) { c.Votes[2].Signature[0] ^= 1 },
		"payload digest": func(c *meshnodev1.QuorumCertificate) { c.PayloadDigest = PayloadDigest([]byte("other")) },
		"proposal id":    func(c *meshnodev1.QuorumCertificate) { c.ProposalId = "p2" },
		"cluster id":     func(c *meshnodev1.QuorumCertificate) { c.ClusterId = "other" },
		"kind":           func(c *meshnodev1.QuorumCertificate) { c.Kind = "payment.refund" },
		"round":          func(c *meshnodev1.QuorumCertificate) { c.Round = 2 },
		"rule written as BFT": func(c *meshnodev1.QuorumCertificate) {
			c.Rule = &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}
		},
		"rule 3 of 4":        func(c *meshnodev1.QuorumCertificate) { c.Rule = kOfN(3) },
		"rule unanimous":     func(c *meshnodev1.QuorumCertificate) { c.Rule = unanimous() },
		"vote removed":       func(c *meshnodev1.QuorumCertificate) { c.Votes = c.Votes[:2] },
		"vote added":         func(c *meshnodev1.QuorumCertificate) { c.Votes = append(c.Votes, ms[3].vote(p, approve)) },
		"vote duplicated":    func(c *meshnodev1.QuorumCertificate) { c.Votes[2] = c.Votes[1] },
		"votes reordered":    func(c *meshnodev1.QuorumCertificate) { c.Votes[0], c.Votes[1] = c.Votes[1], c.Votes[0] },
		"electorate node":    func(c *meshnodev1.QuorumCertificate) { c.Electorate[0].Node = "n09" },
		"electorate member":  func(c *meshnodev1.QuorumCertificate) { c.Electorate[3].AgentId = "n03/other" },
		"electorate dropped": func(c *meshnodev1.QuorumCertificate) { c.Electorate = c.Electorate[:3] },
		"electorate reordered": func(c *meshnodev1.QuorumCertificate) {
			c.Electorate[0], c.Electorate[1] = c.Electorate[1], c.Electorate[0]
		},
		"vote relabelled": func(c *meshnodev1.QuorumCertificate) { c.Votes[0].VoterAgentId = "n03/voter" },
		"empty":           func(c *meshnodev1.QuorumCertificate) { *c = meshnodev1.QuorumCertificate{} },
	}
	for name, tamper := range tampering {
		t.Run(name, func(t *testing.T) {
			c := proto.Clone(cert).(*meshnodev1.QuorumCertificate)
			tamper(c)
			if err := VerifyCertificateSignatures(c, keys); !errors.Is(err, ErrInvalidCertificate) {
				t.Fatalf("tampered certificate (%s) verified: %v", name, err)
			}
		})
	}
	if err := VerifyCertificateSignatures(nil, keys); !errors.Is(err, ErrInvalidCertificate) {
		t.Fatalf("nil certificate: %v", err)
	}
	// Swapping in another member's genuine approval proves the same
	// decision by a different quorum, so it verifies: a certificate proves
	// that a quorum agreed, not which quorum the coordinator saw first.
	other := proto.Clone(cert).(*meshnodev1.QuorumCertificate)
	other.Votes[2] = ms[3].vote(p, approve)
	if err := VerifyCertificateSignatures(other, keys); err != nil {
		t.Fatalf("another genuine quorum of approvals: %v", err)
	}
}

func TestVerifyCertificateAgainstRegistry(t *testing.T) {
	ms := newMembers(4)
	cert, _ := decidedCert(t, ms)
	rotated := votersOf(ms)
	rotated[1].PublicKey, _ = testKey("rotated")
	moved := votersOf(ms)
	moved[2].Node = "n42"
	for name, keys := range map[string]KeyLookup{
		"key not registered": NewKeyMap(votersOf(ms)[1:]...),
		"different key":      NewKeyMap(rotated...),
		"agent on another node": KeyLookupFunc(func(id string) (Voter, error) {
			return NewKeyMap(moved...).Voter(id)
		}),
	} {
		if err := VerifyCertificateSignatures(cert, keys); !errors.Is(err, ErrInvalidCertificate) {
			t.Errorf("%s: VerifyCertificate = %v, want ErrInvalidCertificate", name, err)
		}
	}
}

// A coordinator that saw no quorum (3 approvals of 7, BFT needs 5) cannot
// turn the 3 signed approvals into a certificate by claiming a smaller
// electorate or a weaker rule: the votes signed the real terms.
func TestCertificateCannotBeRelabelled(t *testing.T) {
	ms := newMembers(7)
	p := newProposal("p1", bft(), ms)
	votes := []*meshnodev1.Vote{ms[0].vote(p, approve), ms[1].vote(p, approve), ms[2].vote(p, approve)}
	keys := NewKeyMap(votersOf(ms)...)
	for name, rule := range map[string]*meshnodev1.QuorumRule{"2 of 3": kOfN(2), "unanimous": unanimous()} {
		forged := &meshnodev1.QuorumCertificate{
			ClusterId: testCluster, ProposalId: p.GetId(), Kind: p.GetKind(), PayloadDigest: p.GetPayloadDigest(),
			Rule: rule, Electorate: Electorate(votersOf(ms[:3])), Choice: approve,
		}
		forged.Votes = votes
		if name == "2 of 3" {
			forged.Votes = votes[:2]
		}
		if err := VerifyCertificateSignatures(forged, keys); !errors.Is(err, ErrInvalidCertificate) || !errors.Is(err, ErrTermsMismatch) {
			t.Errorf("%s: relabelled certificate: %v, want ErrInvalidCertificate wrapping ErrTermsMismatch", name, err)
		}
	}
}

func TestVerifyEquivocation(t *testing.T) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	keys := NewKeyMap(votersOf(ms)...)
	good := &meshnodev1.EquivocationEvidence{AgentId: ms[1].AgentID, First: ms[1].vote(p, approve), Second: ms[1].vote(p, reject)}
	if err := VerifyEquivocation(good, keys); err != nil {
		t.Fatalf("valid evidence: %v", err)
	}
	forged := NewVote(testCluster, p, reject, "", ms[1].AgentID, ms[1].Node, ms[0].priv)
	tests := map[string]*meshnodev1.EquivocationEvidence{
		"same choice":          {AgentId: ms[1].AgentID, First: ms[1].vote(p, approve), Second: ms[1].vote(p, approve)},
		"forged second vote":   {AgentId: ms[1].AgentID, First: ms[1].vote(p, approve), Second: forged},
		"different proposals":  {AgentId: ms[1].AgentID, First: ms[1].vote(p, approve), Second: ms[1].vote(otherProposal(p, func(q *meshnodev1.Proposal) { q.Id = "p2" }), reject)},
		"different agents":     {AgentId: ms[1].AgentID, First: ms[1].vote(p, approve), Second: ms[2].vote(p, reject)},
		"accuses someone else": {AgentId: ms[2].AgentID, First: ms[1].vote(p, approve), Second: ms[1].vote(p, reject)},
		"one vote":             {AgentId: ms[1].AgentID, First: ms[1].vote(p, approve)},
		"unspecified choice":   {AgentId: ms[1].AgentID, First: ms[1].vote(p, approve), Second: ms[1].vote(p, 0)},
		"unknown agent":        {AgentId: "x/y", First: &meshnodev1.Vote{VoterAgentId: "x/y", Choice: approve}, Second: &meshnodev1.Vote{VoterAgentId: "x/y", Choice: reject}},
	}
	for name, ev := range tests {
		if err := VerifyEquivocation(ev, keys); !errors.Is(err, ErrInvalidEvidence) {
			t.Errorf("%s: VerifyEquivocation = %v, want ErrInvalidEvidence", name, err)
		}
	}
}

func TestNewEvidence(t *testing.T) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	ev, err := NewEvidence(ms[2].vote(p, approve), ms[2].vote(p, abstain))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyEquivocation(ev, NewKeyMap(votersOf(ms)...)); err != nil {
		t.Fatalf("evidence does not verify: %v", err)
	}
	if _, err := NewEvidence(ms[2].vote(p, approve), ms[2].vote(p, approve)); !errors.Is(err, ErrInvalidEvidence) {
		t.Fatalf("same choice: %v, want ErrInvalidEvidence", err)
	}
	if _, err := NewEvidence(ms[2].vote(p, approve), ms[1].vote(p, reject)); !errors.Is(err, ErrInvalidEvidence) {
		t.Fatalf("two agents: %v, want ErrInvalidEvidence", err)
	}
}
