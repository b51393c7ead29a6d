package hub

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Deliver pushes a call onto the agent's Serve stream and waits for its
// answer, the caller's cancellation (the handler is then sent a
// CallCancel) or the stream's end. It sets d.CallId (see
// Config.KeepCallIDs); cc is what calls made by the handler inherit.
func (h *Hub) Deliver(ctx context.Context, agentID string, d *meshnodev1.Delivery, cc CallContext) (*meshnodev1.RespondRequest, error) {
	h.setCallID(d)
	s, w, release, err := h.begin(ctx, agentID, d, cc)
	if err != nil {
		return nil, err
	}
	defer release()
	select {
	case r := <-w.answer:
		return r, nil
	case <-s.done:
		return nil, errorf(ErrNotServing, "agent %s stopped serving while handling call %s", agentID, d.CallId)
	case <-ctx.Done():
		h.withdraw(s, d.CallId, ctx.Err().Error())
		return nil, ctxError(ctx, "waiting for "+agentID)
	}
}

// setCallID gives d a fresh random id unless Config.KeepCallIDs keeps its
// own: no caller may pick or collide with another call's id.
func (h *Hub) setCallID(d *meshnodev1.Delivery) {
	if d.CallId == "" || !h.cfg.KeepCallIDs {
		d.CallId = h.newID()
	}
}

// begin is the first half of every delivery: it takes an in-flight slot on
// the agent's Serve stream, starts waiting for the answer and pushes the
// call (whose id is set) onto the stream. release gives the slot back and stops the wait.
func (h *Hub) begin(ctx context.Context, agentID string, d *meshnodev1.Delivery, cc CallContext) (*stream, *waiter[*meshnodev1.RespondRequest], func(), error) {
	h.mu.Lock()
	var s *stream
	if a, ok := h.agents[agentID]; ok {
		s = a.serve
	}
	if s == nil {
		h.mu.Unlock()
		return nil, nil, nil, errorf(ErrNotServing, "agent %s is not serving on node %s", agentID, h.cfg.Node)
	}
	if s.limit > 0 && s.inFlight.Load() >= s.limit {
		h.mu.Unlock()
		return nil, nil, nil, errorf(ErrBusy, "agent %s is busy: %d calls in flight, its limit", agentID, s.limit)
	}
	s.inFlight.Add(1)
	h.mu.Unlock()

	w, err := h.calls.add(d.CallId, agentID, cc)
	if err != nil {
		s.inFlight.Add(-1)
		return nil, nil, nil, err
	}
	release := func() {
		h.calls.finish(d.CallId, zeroTime)
		s.inFlight.Add(-1)
	}
	select {
	case s.out <- &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Call{Call: d}}:
		return s, w, release, nil
	case <-s.done:
		release()
		return nil, nil, nil, errorf(ErrNotServing, "agent %s stopped serving before the call was delivered", agentID)
	case <-ctx.Done():
		release()
		return nil, nil, nil, ctxError(ctx, "delivering to "+agentID)
	}
}

// withdraw tells a handler to stop working on a call nobody waits for any
// more. Best effort: the stream may be full, and the answer is dropped
// either way.
func (h *Hub) withdraw(s *stream, callID, reason string) {
	select {
	case s.out <- &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Cancel{Cancel: &meshnodev1.CallCancel{CallId: callID, Reason: reason}}}:
	default:
	}
}

// Respond hands an agent's answer to the call waiting for it. An answer
// over the payload limit fails the call at once, so its caller hears why
// instead of waiting out its deadline.
func (h *Hub) Respond(agentID string, r *meshnodev1.RespondRequest) error {
	if ok := r.GetOk(); ok != nil && h.cfg.MaxPayload > 0 && len(ok.GetPayload()) > h.cfg.MaxPayload {
		msg := fmt.Sprintf("agent %s's response payload is %d bytes, over node %s's limit of %d (max_payload)", agentID, len(ok.GetPayload()), h.cfg.Node, h.cfg.MaxPayload)
		h.calls.answer(r.GetCallId(), agentID, &meshnodev1.RespondRequest{CallId: r.GetCallId(), Result: &meshnodev1.RespondRequest_Error{
			Error: &meshnodev1.CallError{Code: uint32(codes.ResourceExhausted), Message: msg}}})
		return errorf(ErrPayloadTooLarge, "%s", msg)
	}
	_, err := h.calls.answer(r.GetCallId(), agentID, r)
	return err
}

// Parent is a call in progress, as a call its handler makes sees it.
type Parent struct {
	AgentID string // the agent handling it
	CallContext
}

// Parent returns the call in progress with the given id, so a call its
// handler makes inherits the chain, the hops and the deadline.
func (h *Hub) Parent(callID string) (Parent, bool) {
	agentID, cc, ok := h.calls.waiting(callID)
	return Parent{AgentID: agentID, CallContext: cc}, ok
}

// push sends an event on an agent's Serve stream.
func (h *Hub) push(ctx context.Context, agentID string, ev *meshnodev1.ServeResponse) error {
	s := h.streamOf(agentID)
	if s == nil {
		return errorf(ErrNotServing, "agent %s is not serving on node %s", agentID, h.cfg.Node)
	}
	select {
	case s.out <- ev:
		return nil
	case <-s.done:
		return errorf(ErrNotServing, "agent %s stopped serving", agentID)
	case <-ctx.Done():
		return ctxError(ctx, "sending to "+agentID)
	}
}

// AskVote pushes a vote request for p onto a local agent's Serve stream and
// waits for its signed vote.
func (h *Hub) AskVote(ctx context.Context, agentID string, p *meshnodev1.Proposal, clusterID string) (*meshnodev1.Vote, error) {
	v, err := h.Ask(ctx, agentID, &meshnodev1.VoteAsk{Proposal: p, Deadline: p.GetDeadline(), ClusterId: clusterID})
	if err != nil {
		return nil, err
	}
	return v.GetVote(), nil
}

// Ask pushes a vote request onto a local agent's Serve stream and waits for
// the agent's Vote. It sets ask.RequestId (see Config.KeepCallIDs) and
// moves ask.Deadline forward to ctx's deadline when that comes first: the
// wait ends there, so the agent is told so and the request is not
// remembered past it. (A vote forwarded by a peer is waited for at most the
// data plane's MaxVoteWait, whatever its proposal's deadline says.) The
// request is remembered until VoteMemory after that deadline, so a second
// vote for it reaches Config.SecondVote.
func (h *Hub) Ask(ctx context.Context, agentID string, ask *meshnodev1.VoteAsk) (*meshnodev1.VoteRequest, error) {
	if ask.RequestId == "" || !h.cfg.KeepCallIDs {
		ask.RequestId = h.newID()
	}
	if d, ok := ctx.Deadline(); ok && (ask.GetDeadline() == nil || ask.GetDeadline().AsTime().After(d)) {
		ask.Deadline = timestamppb.New(d)
	}
	w, err := h.votes.add(ask.RequestId, agentID, CallContext{})
	if err != nil {
		return nil, err
	}
	defer func() {
		keep := h.clock.Now()
		if d := ask.GetDeadline(); d != nil && d.AsTime().After(keep) {
			keep = d.AsTime()
		}
		h.votes.finish(ask.RequestId, keep.Add(h.cfg.VoteMemory))
	}()
	if err := h.push(ctx, agentID, &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Vote{Vote: ask}}); err != nil {
		return nil, err
	}
	select {
	case v := <-w.answer:
		return v, nil
	case <-ctx.Done():
		return nil, ctxError(ctx, "waiting for the vote of "+agentID)
	}
}

// Vote hands an agent's vote to the request waiting for it. A second vote
// for one request is refused (AlreadyExists) and passed to
// Config.SecondVote with the first.
func (h *Hub) Vote(ctx context.Context, agentID string, req *meshnodev1.VoteRequest) error {
	first, err := h.votes.answer(req.GetRequestId(), agentID, req)
	if errors.Is(err, ErrAlreadyAnswered) && h.cfg.SecondVote != nil {
		h.cfg.SecondVote(ctx, first.GetVote(), req.GetVote())
	}
	return err
}
