package quorum

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Domain-separation contexts. Each signed or hashed structure starts with
// its own context string, so bytes signed for one purpose can never be
// presented as another (a vote as a token, v1 as v2).
const (
	// VoteContext prefixes the message a vote signature covers.
	VoteContext = "meshnode/quorum/vote/v1"
	// TermsContext prefixes the terms digest: kind, rule and electorate.
	TermsContext = "meshnode/quorum/terms/v1"
)

// encoder builds a deterministic byte string: every variable-length field is
// a 4-byte big-endian length and the bytes; integers are fixed width. The
// encoding is injective, unlike concatenation or proto marshalling (whose
// output is not canonical across implementations).
type encoder struct{ b []byte }

func (e *encoder) bytes(p []byte) {
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) str(s string) {
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }

// VoteMessage returns the bytes a vote's signature covers: every field of v
// except the signature, in this order: context, cluster id, proposal id,
// payload digest, terms digest, round, choice, voter agent id, voter node,
// reason.
func VoteMessage(v *meshnodev1.Vote) []byte {
	e := encoder{b: make([]byte, 0, 160+len(v.GetClusterId())+len(v.GetProposalId())+len(v.GetVoterAgentId())+len(v.GetVoterNode())+len(v.GetReason()))}
	e.str(VoteContext)
	e.str(v.GetClusterId())
	e.str(v.GetProposalId())
	e.bytes(v.GetPayloadDigest())
	e.bytes(v.GetTermsDigest())
	e.u32(v.GetRound())
	e.u32(uint32(v.GetChoice()))
	e.str(v.GetVoterAgentId())
	e.str(v.GetVoterNode())
	e.str(v.GetReason())
	return e.b
}

// TermsDigest returns the SHA-256 over what a vote agrees to besides the
// payload: the proposal's kind, its rule exactly as written (kind, k,
// allow_shared_hosts) and its electorate (count, then each agent id and
// node, in the order given, which is sorted by agent id).
func TermsDigest(kind string, rule *meshnodev1.QuorumRule, electorate []*meshnodev1.QuorumVoter) []byte {
	e := encoder{b: make([]byte, 0, 64+len(kind)+32*len(electorate))}
	e.str(TermsContext)
	e.str(kind)
	e.u32(uint32(rule.GetKind()))
	e.u32(rule.GetK())
	if rule.GetAllowSharedHosts() {
		e.u32(1)
	} else {
		e.u32(0)
	}
	e.u32(uint32(len(electorate)))
	for _, v := range electorate {
		e.str(v.GetAgentId())
		e.str(v.GetNode())
	}
	sum := sha256.Sum256(e.b)
	return sum[:]
}

// ProposalTerms returns the terms digest of p.
func ProposalTerms(p *meshnodev1.Proposal) []byte {
	return TermsDigest(p.GetKind(), p.GetRule(), p.GetElectorate())
}

// SignVote sets v.Signature to priv's signature over VoteMessage(v). Like
// ed25519.Sign it panics if priv is not a 64-byte private key.
func SignVote(priv ed25519.PrivateKey, v *meshnodev1.Vote) {
	v.Signature = ed25519.Sign(priv, VoteMessage(v))
}

// VerifyVote checks v's signature against pub. It checks nothing else: the
// tally decides whether the vote is for the right proposal and voter.
func VerifyVote(pub ed25519.PublicKey, v *meshnodev1.Vote) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: voter %q: public key is %d bytes, want %d", ErrBadSignature, v.GetVoterAgentId(), len(pub), ed25519.PublicKeySize)
	}
	if len(v.GetSignature()) != ed25519.SignatureSize || !ed25519.Verify(pub, VoteMessage(v), v.GetSignature()) {
		return fmt.Errorf("%w: voter %q, proposal %q", ErrBadSignature, v.GetVoterAgentId(), v.GetProposalId())
	}
	return nil
}

// NewVote returns voterID's signed vote on p. It is what the agent SDK calls
// after its vote handler chose. It signs the SHA-256 of the payload the voter
// was actually shown, not the digest the request claims, so a coordinator
// that shows one payload and claims another's digest gets a vote the tally
// discards. reason is truncated to MaxReasonBytes.
func NewVote(cluster string, p *meshnodev1.Proposal, choice meshnodev1.Choice, reason, voterID, node string, priv ed25519.PrivateKey) *meshnodev1.Vote {
	if len(reason) > MaxReasonBytes {
		reason = truncateUTF8(reason, MaxReasonBytes)
	}
	v := &meshnodev1.Vote{
		ClusterId:     cluster,
		ProposalId:    p.GetId(),
		PayloadDigest: PayloadDigest(p.GetPayload()),
		TermsDigest:   ProposalTerms(p),
		Choice:        choice,
		Round:         p.GetRound(),
		VoterAgentId:  voterID,
		VoterNode:     node,
		Reason:        reason,
	}
	SignVote(priv, v)
	return v
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
