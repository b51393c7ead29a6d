package quorum

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Votes arrive from peers and agents as protobuf. Whatever the bytes, the
// tally must not panic and must count a vote only if it is the genuine,
// correctly signed vote of a member.
func FuzzTallyVote(f *testing.F) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	for _, v := range []*meshnodev1.Vote{ms[0].vote(p, approve), ms[1].vote(p, abstain), {VoterAgentId: "n00/voter"}} {
		b, _ := proto.Marshal(v)
		f.Add(b)
	}
	voters := votersOf(ms)
	f.Fuzz(func(t *testing.T, b []byte) {
		var v meshnodev1.Vote
		if proto.Unmarshal(b, &v) != nil {
			return
		}
		tl, err := NewTally(testCluster, p, voters)
		if err != nil {
			t.Fatal(err)
		}
		if tl.Add(&v) != nil {
			return
		}
		// Counted: it must be exactly what the member would have signed.
		i := 0
		for ; ms[i].AgentID != v.GetVoterAgentId(); i++ {
		}
		if err := VerifyVote(ms[i].PublicKey, &v); err != nil || v.GetProposalId() != p.GetId() {
			t.Fatalf("counted a vote that is not a member's genuine vote: %v", err)
		}
	})
}

// Certificates are read from Raft state, files and the CLI. Whatever the
// bytes, verification must not panic, and only certificates that are
// byte-for-byte the real one (as protobuf messages) may verify.
func FuzzVerifyCertificate(f *testing.F) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	tl, err := NewTally(testCluster, p, votersOf(ms))
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range ms[:3] {
		_ = tl.Add(m.vote(p, approve))
	}
	cert, err := tl.Certificate()
	if err != nil {
		f.Fatal(err)
	}
	good, _ := proto.Marshal(cert)
	f.Add(good)
	f.Add(good[:len(good)/2])
	keys := NewKeyMap(votersOf(ms)...)
	f.Fuzz(func(t *testing.T, b []byte) {
		// Unknown fields carry no meaning and are not verified; drop them as
		// a reader that compares certificates would.
		var c meshnodev1.QuorumCertificate
		if (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &c) != nil {
			return
		}
		err := VerifyCertificateSignatures(&c, keys)
		if err != nil && !errors.Is(err, ErrInvalidCertificate) {
			t.Fatalf("error does not wrap ErrInvalidCertificate: %v", err)
		}
		if err == nil && !proto.Equal(&c, cert) {
			t.Fatalf("a different certificate verified: %v", &c)
		}
	})
}

// Evidence is decoded from Raft commands; it must never convict on bytes
// that are not two genuine conflicting votes.
func FuzzVerifyEquivocation(f *testing.F) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	ev := &meshnodev1.EquivocationEvidence{AgentId: ms[0].AgentID, First: ms[0].vote(p, approve), Second: ms[0].vote(p, reject)}
	b, _ := proto.Marshal(ev)
	f.Add(b)
	keys := NewKeyMap(votersOf(ms)...)
	f.Fuzz(func(t *testing.T, b []byte) {
		var e meshnodev1.EquivocationEvidence
		if proto.Unmarshal(b, &e) != nil {
			return
		}
		if VerifyEquivocation(&e, keys) == nil && e.GetFirst().GetChoice() == e.GetSecond().GetChoice() {
			t.Fatal("evidence with equal choices convicted")
		}
	})
}
