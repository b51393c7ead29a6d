package quorum

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Self-approval: an agent that names itself as the only voter, under a
// unanimous rule or 1-of-1, is refused before anyone is asked to vote; so
// is a proposal that shares hosts or lowers the threshold below the kind's
// policy. The proposer cannot weaken the rule.
func TestCoordinatorRefusesProposalsBelowPolicy(t *testing.T) {
	h := newHarness(t, 4)
	self := []string{h.ms[0].AgentID}
	for name, p := range map[string]*meshnodev1.Proposal{
		"unanimous of one": {Id: "u1", Kind: "payment.approve", Payload: []byte("1000000"), Deadline: capProposal("x", 4, time.Minute).GetDeadline(),
			Selection: &meshnodev1.VoterSelection{AgentIds: self}, Rule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS}},
		"one of one": {Id: "k1", Kind: "payment.approve", Payload: []byte("1000000"), Deadline: capProposal("x", 4, time.Minute).GetDeadline(),
			Selection: &meshnodev1.VoterSelection{AgentIds: self}, Rule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 1}},
		"3 of 4 on shared hosts": {Id: "s1", Kind: "payment.approve", Deadline: capProposal("x", 4, time.Minute).GetDeadline(),
			Selection: &meshnodev1.VoterSelection{Capability: "payment.approve", Count: 4},
			Rule:      &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 3, AllowSharedHosts: true}},
	} {
		_, err := h.coord.Propose(context.Background(), p)
		if !errors.Is(err, ErrBelowPolicy) {
			t.Errorf("%s: %v, want ErrBelowPolicy", name, err)
		}
	}
	if n := h.req.totalCalls(); n != 0 {
		t.Fatalf("%d vote requests went out for refused proposals", n)
	}
}

// A kind's policy is what an operator set: its minimum size and rule, its
// pinned nodes and its voter capability; a kind without one gets the
// cluster default.
func TestPolicyChecks(t *testing.T) {
	ms := newMembers(5)
	bft := &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}
	kofn := func(k uint32) *meshnodev1.QuorumRule {
		return &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: k}
	}
	p := newProposal("p", bft, ms[:4])
	if err := CheckElectorateAgainst(DefaultPolicy(), p); err != nil {
		t.Fatalf("BFT 4 on distinct hosts under the default: %v", err)
	}
	if err := CheckElectorateAgainst(DefaultPolicy(), newProposal("p", kofn(3), ms[:4])); err != nil {
		t.Fatalf("3 of 4 meets BFT's 3 of 4: %v", err)
	}
	strict := &meshnodev1.QuorumPolicy{Kind: "payment.approve", MinRule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS}, MinVoters: 5}
	for name, tc := range map[string]struct {
		pol  *meshnodev1.QuorumPolicy
		p    *meshnodev1.Proposal
		want string
	}{
		"too few":        {strict, newProposal("p", bft, ms[:4]), "at least 5"},
		"lower":          {strict, newProposal("p", bft, ms), "policy needs at least 5"},
		"not pinned":     {&meshnodev1.QuorumPolicy{EligibleNodes: []string{ms[0].Node, ms[1].Node, ms[2].Node, "elsewhere"}}, p, "not one of the policy's eligible nodes"},
		"named voters":   {&meshnodev1.QuorumPolicy{VoterCapability: "payment.approve"}, p, "chosen by the node"},
		"default policy": {DefaultPolicy(), newProposal("p", kofn(2), ms[:3]), "the cluster's default quorum policy"},
	} {
		err := CheckTerms(tc.pol, tc.p)
		if err == nil {
			err = CheckElectorateAgainst(tc.pol, tc.p)
		}
		if !errors.Is(err, ErrBelowPolicy) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrBelowPolicy saying %q", name, err, tc.want)
		}
	}
	for name, pol := range map[string]*meshnodev1.QuorumPolicy{
		"shared hosts in the rule": {MinRule: &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N, K: 2, AllowSharedHosts: true}, MinVoters: 3},
		"undecidable minimum":      {MinRule: kofn(5), MinVoters: 3},
		"too few pinned":           {EligibleNodes: []string{"a", "b"}},
	} {
		if err := ValidatePolicy(pol); err == nil {
			t.Errorf("%s: ValidatePolicy accepted %v", name, pol)
		}
	}
	stored := map[string]*meshnodev1.QuorumPolicy{"": {MinVoters: 7}, "payment.approve": strict}
	if got := Effective(stored, "other"); got.GetMinVoters() != 7 || got.GetKind() != "" {
		t.Fatalf("a kind without a policy gets %v, want the cluster default", got)
	}
	if got := Effective(nil, "other"); got.GetMinVoters() != DefaultBFTVoters {
		t.Fatalf("no policies at all: %v, want the built-in default", got)
	}
}

// A capability electorate is drawn by a digest of the proposal id and the
// agent id: the same for any listing order, different across ids, so names
// that sort first do not always vote.
func TestDrawOrder(t *testing.T) {
	ms := votersOf(newMembers(8))
	reversed := slices.Clone(ms)
	slices.Reverse(reversed)
	ids := func(vs []Voter) string {
		var out []string
		for _, v := range vs {
			out = append(out, v.AgentID)
		}
		return strings.Join(out, ",")
	}
	a, b := DrawOrder("pay-1", ms), DrawOrder("pay-1", reversed)
	if ids(a) != ids(b) {
		t.Fatalf("the draw depends on the listing order: %s vs %s", ids(a), ids(b))
	}
	firsts := map[string]bool{}
	for i := range 20 {
		firsts[DrawOrder(fmt.Sprintf("pay-%d", i), ms)[0].AgentID] = true
	}
	if len(firsts) < 3 {
		t.Fatalf("20 proposal ids drew only %d different first voters", len(firsts))
	}
}
