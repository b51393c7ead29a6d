package operator

import (
	"fmt"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// MethodReview is the admin method of a quorum review.
const MethodReview = "/meshnode.v1.QuorumService/Review"

// VerifyReview checks the review recorded in d with nothing but the trust
// bundle and the operators' signed records (which a node serves, but cannot
// forge): the signed command is a review of this decision, with this
// outcome and reason, for this cluster, by an operator whose chain was
// valid and held the reviewer role when the review was applied. It returns
// the reviewer's record.
func VerifyReview(bundle *meshnodev1.TrustBundle, records Records, clusterID []byte, d *meshnodev1.Decision) (*meshnodev1.OperatorRecord, error) {
	rv := d.GetReview()
	if rv == nil {
		return nil, fmt.Errorf("decision %s has no review", d.GetProposal().GetId())
	}
	sc := rv.GetSignature()
	if sc == nil {
		return nil, fmt.Errorf("review of %s: %w", d.GetProposal().GetId(), ErrUnsigned)
	}
	if sc.GetOperator() != rv.GetOperator() {
		return nil, fmt.Errorf("review of %s: recorded as by %q, signed by %q", d.GetProposal().GetId(), rv.GetOperator(), sc.GetOperator())
	}
	if rv.GetOutcome() != d.GetOutcome() {
		return nil, fmt.Errorf("review of %s: the decision's outcome %v is not the review's %v", d.GetProposal().GetId(), d.GetOutcome(), rv.GetOutcome())
	}
	// The request the reviewer signed, rebuilt from what the decision
	// records: any change to the id, outcome or reason breaks the digest.
	req := &meshnodev1.ReviewRequest{Id: d.GetProposal().GetId(), Outcome: rv.GetOutcome(), Reason: rv.GetReason()}
	at := rv.GetReviewedAt().AsTime()
	var reviewer *meshnodev1.OperatorRecord
	lookup := func(name string) (*meshnodev1.OperatorRecord, error) {
		rec, err := VerifyChain(bundle, records, name, at)
		reviewer = rec
		return rec, err
	}
	if err := VerifyCommand(sc, clusterID, MethodReview, req, at, lookup, RoleReviewer); err != nil {
		return nil, fmt.Errorf("review of %s at %s: %w", d.GetProposal().GetId(), at.UTC().Format(time.RFC3339), err)
	}
	return reviewer, nil
}

// MethodSetQuorumPolicy is the admin method that sets a quorum policy.
const MethodSetQuorumPolicy = "/meshnode.v1.QuorumService/SetQuorumPolicy"

// VerifyQuorumPolicy checks who set a stored quorum policy with nothing but
// the trust bundle and the operators' signed records: the signed command is
// a SetQuorumPolicy of exactly this policy, for this cluster, by an operator
// whose chain was valid and held the policy role when it was signed. It
// returns that operator's record.
func VerifyQuorumPolicy(bundle *meshnodev1.TrustBundle, records Records, clusterID []byte, rec *meshnodev1.QuorumPolicyRecord) (*meshnodev1.OperatorRecord, error) {
	sc := rec.GetSignature()
	if sc == nil {
		return nil, fmt.Errorf("quorum policy of kind %q: %w", rec.GetPolicy().GetKind(), ErrUnsigned)
	}
	req := &meshnodev1.SetQuorumPolicyRequest{Policy: rec.GetPolicy()}
	at := time.Unix(0, sc.GetIssuedAtUnixNano())
	var signer *meshnodev1.OperatorRecord
	lookup := func(name string) (*meshnodev1.OperatorRecord, error) {
		r, err := VerifyChain(bundle, records, name, at)
		signer = r
		return r, err
	}
	if err := VerifyCommand(sc, clusterID, MethodSetQuorumPolicy, req, at, lookup, RolePolicy); err != nil {
		return nil, fmt.Errorf("quorum policy of kind %q: %w", rec.GetPolicy().GetKind(), err)
	}
	return signer, nil
}
