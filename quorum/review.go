package quorum

import (
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// ApplyReview returns a copy of d with an operator's review recorded: status
// REVIEWED, outcome APPROVE or REJECT, and who decided, why and when. Only a
// NEEDS_REVIEW decision can be reviewed (ErrNotReviewable otherwise), so a
// review never overrides a quorum. operator is the identity the node took
// from the socket's peer credentials; reason is required for the audit
// trail. d is not modified.
func ApplyReview(d *meshnodev1.Decision, operator string, approve bool, reason string, now time.Time) (*meshnodev1.Decision, error) {
	id := d.GetProposal().GetId()
	switch {
	case d == nil:
		return nil, fmt.Errorf("%w: no decision", ErrNotReviewable)
	case d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW:
		return nil, fmt.Errorf("%w: proposal %q is %s; only proposals that escalated without a quorum are reviewed",
			ErrNotReviewable, id, d.GetStatus())
	case operator == "":
		return nil, fmt.Errorf("reviewing proposal %q: the operator identity is required", id)
	case reason == "" || len(reason) > MaxReasonBytes || !utf8.ValidString(reason):
		return nil, fmt.Errorf("reviewing proposal %q: a reason of 1-%d bytes of UTF-8 is required (--reason)", id, MaxReasonBytes)
	}
	out := proto.Clone(d).(*meshnodev1.Decision)
	outcome := meshnodev1.Choice_CHOICE_REJECT
	if approve {
		outcome = meshnodev1.Choice_CHOICE_APPROVE
	}
	out.Status = meshnodev1.DecisionStatus_DECISION_STATUS_REVIEWED
	out.Outcome = outcome
	out.Review = &meshnodev1.QuorumReview{
		Operator:   operator,
		Outcome:    outcome,
		Reason:     reason,
		ReviewedAt: timestamppb.New(now),
	}
	return out, nil
}
