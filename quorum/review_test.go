package quorum

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestApplyReview(t *testing.T) {
	ms := newMembers(4)
	needs := &meshnodev1.Decision{Proposal: newProposal("p1", bft(), ms), Status: meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW}
	before := proto.Clone(needs)
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, approveIt := range []bool{true, false} {
		d, err := ApplyReview(needs, "uid:1000", approveIt, "checked the invoice by phone", now)
		if err != nil {
			t.Fatal(err)
		}
		want := reject
		if approveIt {
			want = approve
		}
		r := d.GetReview()
		if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED || d.GetOutcome() != want ||
			r.GetOperator() != "uid:1000" || r.GetOutcome() != want || r.GetReason() == "" || !r.GetReviewedAt().AsTime().Equal(now) {
			t.Fatalf("reviewed decision %v", d)
		}
	}
	if !proto.Equal(needs, before) {
		t.Fatal("ApplyReview modified its input")
	}

	for _, st := range []meshnodev1.DecisionStatus{
		meshnodev1.DecisionStatus_DECISION_STATUS_PENDING, meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED,
		meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM, meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED,
	} {
		d := &meshnodev1.Decision{Proposal: needs.GetProposal(), Status: st}
		if _, err := ApplyReview(d, "uid:0", true, "override", now); !errors.Is(err, ErrNotReviewable) {
			t.Errorf("review of a %s decision: %v, want ErrNotReviewable", st, err)
		}
	}
	if _, err := ApplyReview(nil, "uid:0", true, "x", now); !errors.Is(err, ErrNotReviewable) {
		t.Errorf("review of nil: %v", err)
	}
	if _, err := ApplyReview(needs, "", true, "x", now); err == nil {
		t.Error("review without an operator accepted")
	}
	if _, err := ApplyReview(needs, "uid:0", true, "", now); err == nil {
		t.Error("review without a reason accepted")
	}
}
