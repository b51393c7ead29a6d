package quorum

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

const testCluster = "cluster-test"

var (
	approve = meshnodev1.Choice_CHOICE_APPROVE
	reject  = meshnodev1.Choice_CHOICE_REJECT
	abstain = meshnodev1.Choice_CHOICE_ABSTAIN
)

// member is a test voter with its private key.
type member struct {
	Voter
	priv ed25519.PrivateKey
}

// testKey derives a deterministic key pair from a label.
func testKey(label string) (ed25519.PublicKey, ed25519.PrivateKey) {
	seed := sha256.Sum256([]byte("quorum-test-key/" + label))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return priv.Public().(ed25519.PublicKey), priv
}

// newMembers returns n voters "n<i>/voter" on nodes "n<i>" (distinct hosts).
func newMembers(n int) []member {
	ms := make([]member, n)
	for i := range ms {
		node := fmt.Sprintf("n%02d", i)
		ms[i] = newMember(node+"/voter", node)
	}
	return ms
}

func newMember(id, node string) member {
	pub, priv := testKey(id)
	return member{Voter: Voter{AgentID: id, Node: node, PublicKey: pub}, priv: priv}
}

func votersOf(ms []member) []Voter {
	vs := make([]Voter, len(ms))
	for i, m := range ms {
		vs[i] = m.Voter
	}
	return vs
}

func idsOf(ms []member) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.AgentID
	}
	return ids
}

// newProposal returns a complete proposal (electorate filled) for ms.
func newProposal(id string, rule *meshnodev1.QuorumRule, ms []member) *meshnodev1.Proposal {
	payload := []byte(`{"amount": 1200, "to": "acme"}`)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &meshnodev1.Proposal{
		Id:            id,
		Kind:          "payment.approve",
		Payload:       payload,
		PayloadDigest: PayloadDigest(payload),
		Selection:     &meshnodev1.VoterSelection{AgentIds: idsOf(ms)},
		Rule:          rule,
		CreatedAt:     timestamppb.New(created),
		Deadline:      timestamppb.New(created.Add(time.Minute)),
		Electorate:    Electorate(votersOf(ms)),
	}
}

func (m member) vote(p *meshnodev1.Proposal, c meshnodev1.Choice) *meshnodev1.Vote {
	return NewVote(testCluster, p, c, "because", m.AgentID, m.Node, m.priv)
}

func bft() *meshnodev1.QuorumRule { return nil }

func kOfN(k uint32) *meshnodev1.QuorumRule {
	return &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: k}
}

func unanimous() *meshnodev1.QuorumRule {
	return &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS}
}

func mustTally(t testing.TB, p *meshnodev1.Proposal, ms []member) *Tally {
	t.Helper()
	tl, err := NewTally(testCluster, p, votersOf(ms))
	if err != nil {
		t.Fatalf("NewTally: %v", err)
	}
	return tl
}
