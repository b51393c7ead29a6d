package operator

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// reviewed is decision p1 as the state machine records a review by op
// signed with op's key for cluster.
func reviewed(t *testing.T, op string, cluster []byte, reason string) *meshnodev1.Decision {
	t.Helper()
	req := &meshnodev1.ReviewRequest{Id: "p1", Outcome: meshnodev1.Choice_CHOICE_APPROVE, Reason: reason}
	sc, err := SignCommand(op, testKey(op), cluster, MethodReview, req, t0, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &meshnodev1.Decision{
		Proposal: &meshnodev1.Proposal{Id: "p1"}, Status: meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED, Outcome: meshnodev1.Choice_CHOICE_APPROVE,
		Review: &meshnodev1.QuorumReview{Operator: op, Outcome: meshnodev1.Choice_CHOICE_APPROVE, Reason: reason, ReviewedAt: timestamppb.New(t0), Signature: sc},
	}
}

// A review verifies with only the trust bundle and the signed records; a
// changed reason or outcome, a signer without the reviewer role, another
// cluster's signature, or a missing signature does not.
func TestVerifyReview(t *testing.T) {
	b, recs := testBundle(t), testRecords(t)
	cluster := []byte("0123456789abcdef0123456789abcdef")
	if r, err := VerifyReview(b, recs, cluster, reviewed(t, "carol", cluster, "checked the invoice")); err != nil || r.GetName() != "carol" {
		t.Fatalf("a reviewer's review: %v, %v", r, err)
	}
	changedReason := reviewed(t, "carol", cluster, "checked the invoice")
	changedReason.Review.Reason = "no reason"
	flipped := reviewed(t, "carol", cluster, "checked the invoice")
	flipped.Outcome, flipped.Review.Outcome = meshnodev1.Choice_CHOICE_REJECT, meshnodev1.Choice_CHOICE_REJECT
	outcomeOnly := reviewed(t, "carol", cluster, "checked the invoice")
	outcomeOnly.Outcome = meshnodev1.Choice_CHOICE_REJECT
	unsigned := reviewed(t, "carol", cluster, "x")
	unsigned.Review.Signature = nil
	impostor := proto.CloneOf(reviewed(t, "carol", cluster, "x"))
	impostor.Review.Operator = "alice"
	for name, tc := range map[string]struct {
		d    *meshnodev1.Decision
		want error
	}{
		"reason changed":     {changedReason, ErrBodyChanged},
		"outcome changed":    {flipped, ErrBodyChanged},
		"decision outcome":   {outcomeOnly, nil},
		"policy role":        {reviewed(t, "bob", cluster, "mine"), ErrRoleMissing},
		"other cluster":      {reviewed(t, "carol", []byte("another-cluster-id-of-32-bytes!!"), "x"), ErrWrongCluster},
		"unsigned":           {unsigned, ErrUnsigned},
		"recorded as others": {impostor, nil},
		"unknown operator":   {reviewed(t, "mallory", cluster, "x"), ErrUnknownOperator},
	} {
		_, err := VerifyReview(b, recs, cluster, tc.d)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want an error wrapping %v", name, err, tc.want)
		}
	}
}
