package quorum

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Offline verification: a QuorumBundle carries a decision with the keys
// its voters held when it was committed and the operator records that sign
// its policy and review. VerifyBundle checks it with the cluster's trust
// bundle and nothing else: the review against the reviewer's chain to the
// first admin; otherwise the certificate against the bundled keys, the
// quorum policy against the policy operator's chain, and the decision
// against the policy. When the policy pins the voters' keys, the bundled
// keys are proven by the policy itself; when it does not, they are the
// registry's word, and the report says so.

// MaxBundleBytes bounds an encoded QuorumBundle.
const MaxBundleBytes = 4 << 20

// ErrUnpinnedKeys is returned by VerifyBundle, when asked to require it,
// for a decision whose quorum policy pins no keys.
var ErrUnpinnedKeys = errors.New("the quorum policy pins no voter keys")

// BundleReport is what a bundle proved.
type BundleReport struct {
	Decision *meshnodev1.Decision
	// N and Q are the electorate's size and the threshold (0 for a review).
	N, Q int
	// PolicySetBy is the operator who signed the quorum policy, or "" for
	// the built-in default.
	PolicySetBy string
	// Reviewer is the operator whose signed review decided, or "".
	Reviewer string
	// KeysPinned says the policy names the voters' keys, so the certificate
	// needs nothing but the trust bundle.
	KeysPinned bool
}

// DecodeBundle decodes a QuorumBundle from untrusted bytes.
func DecodeBundle(data []byte) (*meshnodev1.QuorumBundle, error) {
	if len(data) > MaxBundleBytes {
		return nil, fmt.Errorf("%w: bundle is %d bytes, at most %d", ErrInvalidCertificate, len(data), MaxBundleBytes)
	}
	b := &meshnodev1.QuorumBundle{}
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("%w: bundle does not decode: %v", ErrInvalidCertificate, err)
	}
	return b, nil
}

// HistoryKeys is a KeyLookup over recorded keys: the key each agent held at
// Raft index at (from_index <= at < until_index, or still current).
func HistoryKeys(keys []*meshnodev1.AgentKey, at uint64) KeyLookup {
	return KeyLookupFunc(func(agentID string) (Voter, error) {
		node, _, _ := strings.Cut(agentID, "/") // an agent id is "node/name"
		for _, r := range keys {
			if r.GetAgentId() == agentID && r.GetFromIndex() <= at && (r.GetUntilIndex() == 0 || at < r.GetUntilIndex()) && len(r.GetPublicKey()) == ed25519.PublicKeySize {
				return Voter{AgentID: agentID, Node: node, PublicKey: r.GetPublicKey()}, nil
			}
		}
		return Voter{}, fmt.Errorf("agent %q held no recorded vote key at index %d", agentID, at)
	})
}

// VerifyBundle checks b against trust (the cluster's trust bundle). With
// requirePinned, a decided bundle whose policy pins no keys fails with
// ErrUnpinnedKeys. It returns the first failed check.
func VerifyBundle(trust *meshnodev1.TrustBundle, b *meshnodev1.QuorumBundle, requirePinned bool) (*BundleReport, error) {
	d := b.GetDecision()
	if d.GetProposal() == nil {
		return nil, fmt.Errorf("%w: the bundle has no decision", ErrInvalidCertificate)
	}
	if err := operator.ValidateBundle(trust); err != nil {
		return nil, err
	}
	records := operator.Records{}
	for _, sr := range b.GetOperators() {
		rec, err := operator.OpenRecord(sr)
		if err != nil {
			return nil, fmt.Errorf("bundled operator record: %w", err)
		}
		records[rec.GetName()] = sr
	}
	cluster := operator.ClusterID(trust)
	report := &BundleReport{Decision: d}
	if d.GetStatus() == meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED {
		rec, err := operator.VerifyReview(trust, records, cluster, d)
		if err != nil {
			return nil, err
		}
		report.Reviewer = rec.GetName()
		return report, nil
	}
	keys := HistoryKeys(b.GetKeys(), d.GetCommitIndex())
	if err := VerifyDecision(hex.EncodeToString(cluster), d, keys); err != nil {
		return nil, err
	}
	pol := d.GetPolicy()
	if pol.GetSignature() != nil {
		rec, err := operator.VerifyQuorumPolicy(trust, records, cluster, pol)
		if err != nil {
			return nil, err
		}
		report.PolicySetBy = rec.GetName()
	} else if !proto.Equal(pol.GetPolicy(), DefaultPolicy()) {
		return nil, fmt.Errorf("%w: the decision claims an unsigned quorum policy that is not the built-in default", ErrBelowPolicy)
	}
	p := d.GetProposal()
	for _, check := range []func() error{
		func() error { return CheckTerms(pol.GetPolicy(), p) },
		func() error { return CheckElectorateAgainst(pol.GetPolicy(), p) },
		func() error { return CheckVoterKeys(pol.GetPolicy(), p, keys) },
	} {
		if err := check(); err != nil {
			return nil, err
		}
	}
	report.N = len(p.GetElectorate())
	report.Q, _ = Threshold(p.GetRule(), report.N)
	report.KeysPinned = len(pol.GetPolicy().GetEligibleKeys()) > 0
	if requirePinned && !report.KeysPinned {
		return nil, fmt.Errorf("%w: the voters' keys in the bundle are the registry's word, not the trust bundle's; pin them in the kind's policy (meshnode quorum policy set %s --voter-key FILE ...) for certificates that prove themselves", ErrUnpinnedKeys, p.GetKind())
	}
	return report, nil
}
