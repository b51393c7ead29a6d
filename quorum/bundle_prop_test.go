package quorum

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// For random BFT electorates of n = 3f+1 pinned voters, an adversary that
// holds the keys of a random Byzantine set, sees every honest vote (all for
// the honest choice) and may sign anything with its own keys, assembles the
// best certificate it can for each choice and packs it as a bundle. A
// bundle verifies only if at least q valid votes for its choice exist:
// with at most f Byzantine voters only the honest choice ever verifies, and
// with more the other choice verifies exactly when the Byzantine voters
// alone reach q.
func TestBundleSafetyProperty(t *testing.T) {
	tt := newTestTrust(t)
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 40 {
		f := 1 + rng.IntN(3)
		n := 3*f + 1
		q, _ := Threshold(&meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT}, n)
		ms := newMembers(n)
		var pinned [][]byte
		for _, m := range ms {
			pinned = append(pinned, m.PublicKey)
		}
		pol := tt.signedPolicy(t, &meshnodev1.QuorumPolicy{Kind: "payment.approve", MinVoters: 4, EligibleKeys: pinned}, 50)
		honestChoice := []meshnodev1.Choice{approve, reject}[rng.IntN(2)]
		byzantine := rng.Perm(n)[:rng.IntN(n+1)]
		base := decidedBundle(t, tt.cluster(), ms, pol, tt.records) // for the proposal, keys and certificate shape
		p := base.GetDecision().GetProposal()
		for _, target := range []meshnodev1.Choice{approve, reject} {
			var available []*meshnodev1.Vote
			for i, m := range ms {
				if slices.Contains(byzantine, i) || target == honestChoice {
					available = append(available, NewVote(tt.cluster(), p, target, "", m.AgentID, m.Node, m.priv))
				}
			}
			b := proto.CloneOf(base)
			d := b.GetDecision()
			d.Outcome, d.Certificate.Choice = target, target
			// The adversary's best effort: q votes, repeating what it has
			// when it has fewer.
			var votes []*meshnodev1.Vote
			for i := 0; i < q && len(available) > 0; i++ {
				votes = append(votes, available[i%len(available)])
			}
			slices.SortFunc(votes, func(a, b *meshnodev1.Vote) int { return strings.Compare(a.GetVoterAgentId(), b.GetVoterAgentId()) })
			d.Certificate.Votes = votes
			_, err := VerifyBundle(tt.bundle, b, true)
			enough := len(available) >= q
			what := fmt.Sprintf("round %d: n=%d f=%d byzantine=%d honest=%v target=%v", round, n, f, len(byzantine), honestChoice, target)
			if enough && err != nil {
				t.Fatalf("%s: %d valid votes for the target did not verify: %v", what, len(available), err)
			}
			if !enough && err == nil {
				t.Fatalf("%s: a bundle with only %d valid votes (q=%d) verified", what, len(available), q)
			}
			if len(byzantine) <= f && target != honestChoice && err == nil {
				t.Fatalf("%s: with at most f Byzantine voters the other choice verified", what)
			}
		}
	}
}
