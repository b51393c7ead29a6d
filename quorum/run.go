package quorum

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// answer is one voter's reply to a vote request.
type answer struct {
	voter   Voter
	vote    *meshnodev1.Vote
	checked Checked // verified on the answering goroutine
	err     error
}

// execute runs one proposal's vote to its end and commits the decision.
func (c *Coordinator) execute(r *run, t *Tally, voters []Voter) {
	p := r.pending.GetProposal()
	log := c.cfg.Logger.With("proposal", p.GetId(), "kind", p.GetKind())
	deadline := p.GetDeadline().AsTime()

	// ctx carries the deadline to the transport and is cancelled as soon as
	// the outcome is known, so stragglers stop working on it.
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	answers := make(chan answer, len(voters)) // buffered: senders never block
	// Once collect has stopped, a straggler's vote is not counted, so its
	// signature is not checked either: that work would compete with the
	// decision's commit for CPU.
	var closed atomic.Bool
	for _, v := range voters {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			vote, err := c.req.RequestVote(ctx, v, p)
			a := answer{voter: v, vote: vote, err: err}
			if err == nil && !closed.Load() {
				a.checked = t.Check(vote)
			}
			answers <- a
		}()
	}
	end, late := c.collect(t, answers, len(voters), deadline, log)
	closed.Store(true)
	cancel()
	if c.ctx.Err() != nil {
		c.finish(r, nil, fmt.Errorf("proposal %q: %w; propose it again to restart the vote", p.GetId(), ErrClosed))
		return
	}

	d := c.decide(p, t, end, late)
	d.Policy = r.pending.GetPolicy()
	c.cfg.Finished(d)
	log.Info("quorum vote closed", "status", d.GetStatus(), "outcome", d.GetOutcome(), "detail", d.GetDetail())
	cctx, ccancel := context.WithTimeout(c.ctx, c.cfg.CommitTimeout)
	defer ccancel()
	committed, err := c.com.Commit(cctx, d)
	if err == nil {
		// Start read a replica that may lag: the id may have been decided
		// elsewhere meanwhile, possibly for a different proposal.
		err = conflict(committed.GetProposal(), p)
	}
	if err != nil {
		c.finish(r, nil, fmt.Errorf("committing decision on proposal %q: %w", p.GetId(), err))
		return
	}
	c.finish(r, committed, nil)
}

// collect feeds answers into t until the outcome is known, every voter has
// answered, or the deadline passes. It returns why it stopped and how many
// votes came too late.
func (c *Coordinator) collect(t *Tally, answers <-chan answer, n int, deadline time.Time, log *slog.Logger) (end string, late int) {
	timer := c.cfg.Clock.After(deadline.Sub(c.cfg.Clock.Now()))
	for answered := 0; answered < n; {
		select {
		case a := <-answers:
			answered++
			switch {
			case a.err != nil:
				log.Debug("voter did not answer", "voter", a.voter.AgentID, "node", a.voter.Node, "err", a.err)
				continue
			case c.cfg.Clock.Now().After(deadline):
				late++
				log.Warn("vote discarded", "voter", a.voter.AgentID, "err", ErrLateVote)
				continue
			}
			if err := t.AddChecked(a.checked); err != nil {
				log.Warn("vote discarded", "voter", a.voter.AgentID, "claimed_voter", a.vote.GetVoterAgentId(), "err", err)
			}
			if o, _ := t.Outcome(); o != OutcomePending {
				return o.String(), late
			}
		case <-timer:
			return "deadline passed", late
		case <-c.ctx.Done(): // Close; the deadline is the timer's, on the injected clock
			return "coordinator closed", late
		}
	}
	return "every voter answered", late
}

// decide builds the decision for a finished tally.
func (c *Coordinator) decide(p *meshnodev1.Proposal, t *Tally, end string, late int) *meshnodev1.Decision {
	res := t.Result()
	d := &meshnodev1.Decision{
		Proposal:      proto.Clone(p).(*meshnodev1.Proposal),
		Votes:         res.Counted,
		Equivocations: res.Equivocations,
		ClosedAt:      timestamppb.New(c.cfg.Clock.Now()),
	}
	if res.Outcome == OutcomeDecided {
		cert, _ := t.Certificate() // decided, so it has one
		d.Status = meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED
		d.Outcome = res.Choice
		d.Certificate = cert
		d.Detail = fmt.Sprintf("%s: %d approve, %d reject, %d abstain of %d voters; threshold %d",
			res.Choice, res.Approve, res.Reject, res.Abstain, res.Electorate, res.Threshold)
		return d
	}
	d.Detail = fmt.Sprintf("no quorum (%s): %d approve, %d reject, %d abstain, %d silent (%d late), %d votes discarded, %d equivocations; threshold %d of %d",
		end, res.Approve, res.Reject, res.Abstain, res.Silent, late, len(res.Discarded), len(res.Equivocations), res.Threshold, res.Electorate)
	if p.GetOnNoQuorum() == meshnodev1.NoQuorumAction_NO_QUORUM_ACTION_ESCALATE {
		d.Status = meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW
		return d
	}
	d.Status = meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM
	d.Outcome = meshnodev1.Choice_CHOICE_REJECT
	return d
}
