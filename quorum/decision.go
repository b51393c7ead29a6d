package quorum

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// ErrNoCertificate is returned by VerifyDecision for a decision that has no
// certificate to verify (pending, no quorum, waiting for or after review).
var ErrNoCertificate = errors.New("decision has no quorum certificate")

// VerifyDecision checks a recorded decision offline, as `meshnode quorum
// verify` does: its certificate verifies against keys, belongs to this very
// proposal (cluster, id, kind, payload digest, rule, electorate, round), and
// its choice is the decision's outcome; and every piece of equivocation
// evidence in it convicts its agent. clusterID may be empty to accept the
// certificate's own. A decision without a certificate fails with
// ErrNoCertificate.
func VerifyDecision(clusterID string, d *meshnodev1.Decision, keys KeyLookup) error {
	p := d.GetProposal()
	for _, ev := range d.GetEquivocations() {
		if err := VerifyEquivocation(ev, keys); err != nil {
			return fmt.Errorf("proposal %q: %w", p.GetId(), err)
		}
	}
	if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED || d.GetCertificate() == nil {
		return fmt.Errorf("%w: proposal %q is %s", ErrNoCertificate, p.GetId(), d.GetStatus())
	}
	cert := d.GetCertificate()
	if err := VerifyCertificateSignatures(cert, keys); err != nil {
		return err
	}
	mismatch := func(what string) error {
		return fmt.Errorf("%w: proposal %q: the certificate's %s differs from the decision's", ErrInvalidCertificate, p.GetId(), what)
	}
	switch {
	case clusterID != "" && cert.GetClusterId() != clusterID:
		return mismatch("cluster")
	case cert.GetProposalId() != p.GetId() || cert.GetKind() != p.GetKind() || cert.GetRound() != p.GetRound():
		return mismatch("proposal id, kind or round")
	case !bytes.Equal(cert.GetPayloadDigest(), p.GetPayloadDigest()):
		return mismatch("payload digest")
	case len(p.GetPayload()) > 0 && !bytes.Equal(PayloadDigest(p.GetPayload()), p.GetPayloadDigest()):
		return mismatch("payload (its SHA-256)")
	case !proto.Equal(cert.GetRule(), p.GetRule()):
		return mismatch("rule")
	case !slices.EqualFunc(cert.GetElectorate(), p.GetElectorate(), func(a, b *meshnodev1.QuorumVoter) bool { return proto.Equal(a, b) }):
		return mismatch("electorate")
	case cert.GetChoice() != d.GetOutcome():
		return mismatch("choice (outcome)")
	}
	return nil
}

// CrossCheck returns evidence of equivocation between two decisions on one
// proposal id, as when two nodes ran the same id at once and consensus kept
// the first: an agent whose vote in a (its votes and certificate) and vote
// in b are on the same proposal, round, payload and terms with different
// choices. It does not verify signatures: run VerifyEquivocation on each
// piece before acting on it.
func CrossCheck(a, b *meshnodev1.Decision) []*meshnodev1.EquivocationEvidence {
	type key struct {
		agent, cluster, proposal, payload, terms string
		round                                    uint32
	}
	keyOf := func(v *meshnodev1.Vote) key {
		return key{v.GetVoterAgentId(), v.GetClusterId(), v.GetProposalId(), string(v.GetPayloadDigest()), string(v.GetTermsDigest()), v.GetRound()}
	}
	first := map[key]*meshnodev1.Vote{}
	for _, v := range slices.Concat(a.GetVotes(), a.GetCertificate().GetVotes()) {
		if validChoice(v.GetChoice()) {
			first[keyOf(v)] = v
		}
	}
	var out []*meshnodev1.EquivocationEvidence
	seen := map[string]bool{}
	for _, v := range slices.Concat(b.GetVotes(), b.GetCertificate().GetVotes()) {
		prev, ok := first[keyOf(v)]
		if !ok || !validChoice(v.GetChoice()) || prev.GetChoice() == v.GetChoice() || seen[v.GetVoterAgentId()] {
			continue
		}
		seen[v.GetVoterAgentId()] = true
		out = append(out, &meshnodev1.EquivocationEvidence{AgentId: v.GetVoterAgentId(), First: prev, Second: v})
	}
	return out
}
