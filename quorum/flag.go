package quorum

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Flagger bars an agent from voter sets: the registry's equivocation flag.
// Implementations must be idempotent for one (agent, reason): every node
// that sees the same evidence reports it.
type Flagger interface {
	FlagAgent(ctx context.Context, agentID, reason string, evidence *meshnodev1.EquivocationEvidence) error
}

// FlagEquivocators flags every agent that a committed decision's evidence
// convicts and returns their ids. Each piece of evidence is verified against
// keys first: a compromised coordinator must not be able to get honest
// agents excluded by recording evidence that does not hold.
func FlagEquivocators(ctx context.Context, d *meshnodev1.Decision, keys KeyLookup, flag Flagger, log *slog.Logger) []string {
	var flagged []string
	id := d.GetProposal().GetId()
	for _, ev := range d.GetEquivocations() {
		if err := VerifyEquivocation(ev, keys); err != nil {
			log.Warn("ignoring equivocation evidence that does not verify", "agent", ev.GetAgentId(), "proposal", id, "err", err)
			continue
		}
		if flagAgent(ctx, flag, ev, "equivocated on proposal "+id, log) {
			flagged = append(flagged, ev.GetAgentId())
		}
	}
	return flagged
}

// FlagDoubleVote handles a second vote for a vote request already answered.
// Two different votes that convict their agent by content and signature are
// equivocation: the agent is flagged and FlagDoubleVote reports true. A
// repeat of the same vote, or a pair that does not verify, flags nobody.
func FlagDoubleVote(ctx context.Context, first, second *meshnodev1.Vote, keys KeyLookup, flag Flagger, log *slog.Logger) bool {
	if proto.Equal(first, second) {
		return false
	}
	ev, err := NewEvidence(first, second)
	if err != nil {
		return false
	}
	if err := VerifyEquivocation(ev, keys); err != nil {
		log.Debug("second vote is not equivocation evidence", "agent", second.GetVoterAgentId(), "err", err)
		return false
	}
	return flagAgent(ctx, flag, ev, "signed two different votes on proposal "+second.GetProposalId(), log)
}

func flagAgent(ctx context.Context, flag Flagger, ev *meshnodev1.EquivocationEvidence, reason string, log *slog.Logger) bool {
	agentID := ev.GetAgentId()
	if err := flag.FlagAgent(ctx, agentID, reason, ev); err != nil {
		log.Warn("flagging an equivocating agent failed", "agent", agentID, "err", err)
		return false
	}
	log.Warn("agent flagged: it signed two different votes on one proposal", "agent", agentID, "reason", reason)
	return true
}
