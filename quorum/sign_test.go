package quorum

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	v := ms[0].vote(p, approve)
	if err := VerifyVote(ms[0].PublicKey, v); err != nil {
		t.Fatalf("VerifyVote on a fresh vote: %v", err)
	}
	if err := VerifyVote(ms[1].PublicKey, v); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyVote with another agent's key = %v, want ErrBadSignature", err)
	}
	if err := VerifyVote(ms[0].PublicKey[:31], v); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyVote with a short key = %v, want ErrBadSignature", err)
	}
}

// Every field except the signature is covered: changing any one of them
// invalidates the signature.
func TestSignatureCoversEveryField(t *testing.T) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	mutations := map[string]func(v *meshnodev1.Vote){
		"cluster":        func(v *meshnodev1.Vote) { v.ClusterId = "other" },
		"proposal":       func(v *meshnodev1.Vote) { v.ProposalId = "p2" },
		"payload digest": func(v *meshnodev1.Vote) { v.PayloadDigest[0] ^= 1 },
		"terms digest":   func(v *meshnodev1.Vote) { v.TermsDigest[31] ^= 1 },
		"choice":         func(v *meshnodev1.Vote) { v.Choice = reject },
		"round":          func(v *meshnodev1.Vote) { v.Round = 1 },
		"voter id":       func(v *meshnodev1.Vote) { v.VoterAgentId = ms[1].AgentID },
		"voter node":     func(v *meshnodev1.Vote) { v.VoterNode = "n01" },
		"reason":         func(v *meshnodev1.Vote) { v.Reason = "because I was paid" },
		"signature":      func(v *meshnodev1.Vote) { v.Signature[5] ^= 0x80 },
		"no signature":   func(v *meshnodev1.Vote) { v.Signature = nil },
		"long signature": func(v *meshnodev1.Vote) { v.Signature = append(v.Signature, 0) },
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			v := ms[0].vote(p, approve)
			mutate(v)
			if err := VerifyVote(ms[0].PublicKey, v); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("VerifyVote after changing %s = %v, want ErrBadSignature", name, err)
			}
		})
	}
}

// The encoding is injective: moving bytes between adjacent fields changes
// the message (plain concatenation would not).
func TestVoteMessageIsInjective(t *testing.T) {
	a := &meshnodev1.Vote{ClusterId: "ab", ProposalId: "c"}
	b := &meshnodev1.Vote{ClusterId: "a", ProposalId: "bc"}
	if bytes.Equal(VoteMessage(a), VoteMessage(b)) {
		t.Fatal("different field boundaries encode to the same message")
	}
	if !bytes.HasPrefix(VoteMessage(a)[4:], []byte(VoteContext)) {
		t.Fatal("message does not start with the length-prefixed context string")
	}
	el1 := []*meshnodev1.QuorumVoter{{AgentId: "a/x", Node: "a"}, {AgentId: "b/x", Node: "b"}}
	el2 := []*meshnodev1.QuorumVoter{{AgentId: "a/x", Node: "ab/x"}, {AgentId: "", Node: "b"}}
	if bytes.Equal(TermsDigest("k", nil, el1), TermsDigest("k", nil, el2)) {
		t.Fatal("different electorates give the same terms digest")
	}
	r1 := &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}
	if bytes.Equal(TermsDigest("k", nil, el1), TermsDigest("k", r1, el1)) {
		t.Fatal("rule written as UNSPECIFIED and as BFT give the same terms digest: a certificate's rule could be rewritten")
	}
}

// NewVote signs the digest of the payload the voter saw, not the digest the
// request claims.
func TestNewVoteSignsShownPayload(t *testing.T) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	shown := proto.Clone(p).(*meshnodev1.Proposal)
	shown.Payload = []byte(`{"amount": 1, "to": "acme"}`) // claims p's digest, shows another payload
	v := NewVote(testCluster, shown, approve, "", ms[0].AgentID, ms[0].Node, ms[0].priv)
	if bytes.Equal(v.GetPayloadDigest(), p.GetPayloadDigest()) {
		t.Fatal("NewVote signed the claimed digest, not the shown payload's")
	}
	tl := mustTally(t, p, ms)
	if err := tl.Add(v); !errors.Is(err, ErrPayloadMismatch) {
		t.Fatalf("Add(vote on shown payload) = %v, want ErrPayloadMismatch", err)
	}
}

func TestNewVoteTruncatesReason(t *testing.T) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	long := strings.Repeat("é", MaxReasonBytes) // 2 bytes per rune
	v := NewVote(testCluster, p, reject, long, ms[0].AgentID, ms[0].Node, ms[0].priv)
	if len(v.GetReason()) > MaxReasonBytes || !utf8.ValidString(v.GetReason()) {
		t.Fatalf("reason is %d bytes, valid UTF-8 %v", len(v.GetReason()), utf8.ValidString(v.GetReason()))
	}
	if err := mustTally(t, p, ms).Add(v); err != nil {
		t.Fatalf("vote with truncated reason discarded: %v", err)
	}
}
