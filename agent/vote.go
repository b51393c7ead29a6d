package agent

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// Choice is a voter's answer to a proposal.
type Choice = meshnodev1.Choice

// Choices a vote handler returns.
const (
	// Approve the proposal's payload.
	Approve = meshnodev1.Choice_CHOICE_APPROVE
	// Reject the proposal's payload.
	Reject = meshnodev1.Choice_CHOICE_REJECT
	// Abstain: a signed "I decline to decide". It never counts towards a
	// quorum but lets the coordinator stop early when none is possible.
	Abstain = meshnodev1.Choice_CHOICE_ABSTAIN
)

// VoteHandlerFunc decides one quorum proposal: it returns the choice and a
// short reason (at most 1024 bytes are signed). ctx ends at the vote's
// deadline and when the Serve stream breaks. The SDK signs the vote with the
// agent's key over the payload it was shown and sends it to the node.
// Returning an error casts no vote (it is logged); return Abstain to decline
// explicitly.
type VoteHandlerFunc func(ctx context.Context, p *meshnodev1.Proposal) (Choice, string, error)

// HandleVote sets the function that votes on proposals of kind (such as
// "payment.approve"); kind "" handles every kind without its own handler.
// An agent asked to vote on a kind it has no handler for abstains. Like
// Handle, it panics on a nil handler or a duplicate kind.
func (a *Agent) HandleVote(kind string, h VoteHandlerFunc) {
	if h == nil {
		panic("agent: HandleVote needs a non-nil handler")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.voteHandlers == nil {
		a.voteHandlers = map[string]VoteHandlerFunc{}
	}
	if _, dup := a.voteHandlers[kind]; dup {
		panic(fmt.Sprintf("agent: proposal kind %q already has a vote handler", kind))
	}
	a.voteHandlers[kind] = h
}

func (a *Agent) voteHandlerFor(kind string) VoteHandlerFunc {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h, ok := a.voteHandlers[kind]; ok {
		return h
	}
	return a.voteHandlers[""]
}

// nodeName is the node the agent is attached to, as signed into votes.
func (a *Agent) nodeName() string {
	if n := a.node.Load(); n != nil && *n != "" {
		return *n
	}
	node, _, _ := strings.Cut(a.ID(), "/")
	return node
}

// maxVotesInFlight is the bound Serve puts on running vote handlers.
func (a *Agent) maxVotesInFlight() int {
	if a.MaxVotesInFlight <= 0 {
		return DefaultMaxVotesInFlight
	}
	return a.MaxVotesInFlight
}

// dispatchVote runs the vote handler for one VoteAsk, or sheds the request
// when MaxVotesInFlight handlers are already running. It never blocks: the
// receive loop must keep reading so calls are not held up behind votes.
func (s *server) dispatchVote(sctx context.Context, ss *session, ask *meshnodev1.VoteAsk) {
	if v, err := s.a.journal.get(ask.GetProposal().GetId()); v != nil || err != nil {
		// Asked again (another round, electorate or node): the same vote,
		// and no second call to the handler.
		s.wg.Go(func() { s.send(ss, ask, v, err) })
		return
	}
	select {
	case s.votes <- struct{}{}:
	default:
		s.wg.Go(func() { s.shedVote(ss, ask) })
		return
	}
	s.wg.Go(func() {
		choice, reason, err := s.decide(sctx, ask)
		<-s.votes // the handler is done; sending the vote needs no slot
		s.cast(ss, ask, choice, reason, err)
	})
}

// shedVote answers a vote request no handler slot was free for. The
// protocol's one answer is a signed vote, so it abstains: an abstention
// never counts towards a quorum, and answering at once lets the
// coordinator stop early instead of waiting out the deadline for this
// voter. Queueing instead would only move the model calls later, past
// deadlines the node already counts down.
func (s *server) shedVote(ss *session, ask *meshnodev1.VoteAsk) {
	a, p := s.a, ask.GetProposal()
	n := s.shed.Add(1)
	a.log.Warn("shed a vote request (answered Abstain): MaxVotesInFlight vote handlers are already running; raise Agent.MaxVotesInFlight to run more at once",
		"proposal", p.GetId(), "kind", p.GetKind(), "request_id", ask.GetRequestId(),
		"max_votes_in_flight", cap(s.votes), "shed_since_serve", n)
	reason := fmt.Sprintf("agent %s shed this vote request: all %d of its vote handler slots (MaxVotesInFlight) were busy", a.ID(), cap(s.votes))
	s.cast(ss, ask, Abstain, reason, nil)
}

// cast signs the handler's choice (unless it failed) and sends the vote.
func (s *server) cast(ss *session, ask *meshnodev1.VoteAsk, choice Choice, reason string, err error) {
	a, p := s.a, ask.GetProposal()
	log := a.log.With("proposal", p.GetId(), "kind", p.GetKind(), "request_id", ask.GetRequestId())
	if err != nil {
		log.Warn("casting no vote", "err", err)
		return
	}
	v, err := a.journal.record(quorum.NewVote(ask.GetClusterId(), p, choice, reason, a.ID(), a.nodeName(), a.key))
	s.send(ss, ask, v, err)
}

// send delivers the vote that stands for ask's proposal.
func (s *server) send(ss *session, ask *meshnodev1.VoteAsk, v *meshnodev1.Vote, err error) {
	a, p := s.a, ask.GetProposal()
	log := a.log.With("proposal", p.GetId(), "kind", p.GetKind(), "request_id", ask.GetRequestId())
	if err != nil {
		log.Error("casting no vote: the vote journal failed", "err", err)
		return
	}
	choice := v.GetChoice()
	ctx, cancel := context.WithTimeout(context.Background(), respondTimeout)
	defer cancel()
	if err := ss.ans.vote(ctx, &meshnodev1.VoteRequest{RequestId: ask.GetRequestId(), Vote: v}); err != nil {
		log.Warn("could not deliver a vote to the node", "choice", choice, "err", err)
		return
	}
	// Debug, not Info: the node records every vote in the decision's
	// certificate, and a log write per vote is a visible share of a
	// decision's cost.
	log.Debug("voted", "choice", choice)
}

func (s *server) decide(sctx context.Context, ask *meshnodev1.VoteAsk) (choice Choice, reason string, err error) {
	a, p := s.a, ask.GetProposal()
	h := a.voteHandlerFor(p.GetKind())
	if h == nil {
		return Abstain, fmt.Sprintf("agent %s has no vote handler for kind %q", a.ID(), p.GetKind()), nil
	}
	ctx := sctx
	if dl := ask.GetDeadline(); dl != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(sctx, dl.AsTime())
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("vote handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	choice, reason, err = h(ctx, p)
	if err != nil {
		return 0, "", fmt.Errorf("vote handler: %w", err)
	}
	if choice != Approve && choice != Reject && choice != Abstain {
		return 0, "", fmt.Errorf("vote handler returned choice %v: want Approve, Reject or Abstain", choice)
	}
	return choice, reason, nil
}
