package hub

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// AttachStream is the server side of an Attach stream (grpc-go's
// BidiStreamingServer[AttachRequest, ServeResponse] is one).
type AttachStream interface {
	Context() context.Context
	Send(*meshnodev1.ServeResponse) error
	Recv() (*meshnodev1.AttachRequest, error)
}

// Serve runs an agent's Serve stream for its owner o until the agent goes
// away, is removed or the hub stops: it marks the agent ready, then sends
// each delivery, cancel and vote request with send.
func (h *Hub) Serve(ctx context.Context, o Owner, req *meshnodev1.ServeRequest, send func(*meshnodev1.ServeResponse) error) error {
	return h.serve(ctx, o, req, send, nil, nil)
}

// Attach is Serve with the answers (responses and votes) coming back on the
// same stream: one HTTP/2 stream per agent instead of one unary call per
// answer. The checks are Respond's and Vote's; the stream's owner is checked
// once, when it opens. Answers the hub does not take come back as
// AnswerRefused events without ending the stream.
func (h *Hub) Attach(o Owner, st AttachStream) error {
	ctx := st.Context()
	first, err := h.firstMessage(st)
	if err != nil {
		return err
	}
	req := first.GetServe()
	if req == nil {
		return errorf(ErrBadAttach, "the first message on an Attach stream must be serve (got %s); answers may only follow it", attachKind(first))
	}
	id := h.AgentID(req.GetAgentId())
	if err := h.Owned(id, o); err != nil {
		return err
	}
	refusals := make(chan *meshnodev1.ServeResponse, h.cfg.MaxRefusals)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		h.readAnswers(ctx, id, st, refusals)
	}()
	return h.serve(ctx, o, req, st.Send, refusals, ended)
}

// serve is the one serve loop. An Attach stream also passes its refusals to
// report, and ended, closed when the agent's side of the stream ends.
func (h *Hub) serve(ctx context.Context, o Owner, req *meshnodev1.ServeRequest,
	send func(*meshnodev1.ServeResponse) error, refusals <-chan *meshnodev1.ServeResponse, ended <-chan struct{}) error {
	id := h.AgentID(req.GetAgentId())
	if err := h.Owned(id, o); err != nil {
		return err
	}
	var limit int32
	if h.cfg.Limit != nil {
		limit = h.cfg.Limit(id, req)
	}
	s, err := h.openServe(id, o, limit)
	if err != nil {
		return err
	}
	defer func() {
		if h.closeServe(id, s) {
			h.log.Info("agent stopped serving", "agent", id)
			h.statusChanged(id, meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED)
		}
	}()
	// Ready before the agent hears so: once it sees ServeReady, calls reach it.
	h.statusChanged(id, meshnodev1.AgentStatus_AGENT_STATUS_READY)
	ready := &meshnodev1.ServeReady{AgentId: id, MaxMessageBytes: h.cfg.MaxMessageBytes}
	if err := send(&meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Ready{Ready: ready}}); err != nil {
		return err
	}
	h.log.Info("agent serving", "agent", id, "max_in_flight", limit)
	for {
		select {
		case ev := <-s.out:
			if err := send(ev); err != nil {
				return err
			}
		case ev := <-refusals:
			if err := send(ev); err != nil {
				return err
			}
		case <-ended:
			return nil
		case <-s.done:
			if s.removed {
				return errorf(ErrDeregistered, "agent %s was deregistered", id)
			}
			return errorf(ErrNotServing, "agent %s stopped serving", id)
		case <-ctx.Done():
			return nil
		case <-h.cfg.Done:
			return errorf(ErrShuttingDown, "node is shutting down; reconnect to resume serving")
		case <-h.closing:
			return errorf(ErrShuttingDown, "node is shutting down; reconnect to resume serving")
		}
	}
}

func (h *Hub) statusChanged(id string, st meshnodev1.AgentStatus) {
	if h.cfg.StatusChanged != nil {
		h.cfg.StatusChanged(id, st)
	}
}

// firstMessage waits at most AttachOpenTimeout for the stream's first
// message. On timeout the handler returns, which ends the stream and
// unblocks the receive.
func (h *Hub) firstMessage(st AttachStream) (*meshnodev1.AttachRequest, error) {
	type received struct {
		m   *meshnodev1.AttachRequest
		err error
	}
	ch := make(chan received, 1)
	go func() {
		m, err := st.Recv()
		ch <- received{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-h.clock.After(h.cfg.AttachOpenTimeout):
		return nil, errorf(ErrAttachTimeout, "no serve message within %v of opening the Attach stream; send serve first", h.cfg.AttachOpenTimeout)
	}
}

// readAnswers takes the answers an attached agent sends until its side of
// the stream ends. A refused answer is queued as an AnswerRefused event.
func (h *Hub) readAnswers(ctx context.Context, id string, st AttachStream, refusals chan<- *meshnodev1.ServeResponse) {
	for {
		m, err := st.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				h.log.Debug("attach stream ended", "agent", id, "err", err)
			}
			return
		}
		refused := h.take(ctx, id, m)
		if refused == nil {
			continue
		}
		select {
		case refusals <- &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Refused{Refused: refused}}:
		default:
			h.log.Warn("dropping an answer refusal: agent keeps sending answers the node does not take",
				"agent", id, "call_id", refused.GetCallId(), "request_id", refused.GetRequestId(), "reason", refused.GetMessage())
		}
	}
}

// take hands one answer to whoever waits for it, or says why not.
func (h *Hub) take(ctx context.Context, id string, m *meshnodev1.AttachRequest) *meshnodev1.AnswerRefused {
	var err error
	refused := &meshnodev1.AnswerRefused{}
	switch msg := m.GetMsg().(type) {
	case *meshnodev1.AttachRequest_Respond:
		refused.CallId = msg.Respond.GetCallId()
		if a := msg.Respond.GetAgentId(); a != "" && h.AgentID(a) != id {
			err = errorf(ErrWrongStream, "an answer for agent %s was sent on agent %s's stream; answer on the stream the call was delivered on", a, id)
		} else {
			err = h.Respond(id, msg.Respond)
		}
	case *meshnodev1.AttachRequest_Vote:
		refused.RequestId = msg.Vote.GetRequestId()
		if v := msg.Vote.GetVote().GetVoterAgentId(); h.AgentID(v) != id {
			err = errorf(ErrWrongStream, "a vote by agent %q was sent on agent %s's stream; an agent votes only for itself", v, id)
		} else {
			err = h.Vote(ctx, id, msg.Vote)
		}
	default:
		err = errorf(ErrBadAttach, "%s is not an answer; after serve, an Attach stream carries only respond and vote", attachKind(m))
	}
	if h.cfg.OnAnswer != nil {
		h.cfg.OnAnswer(id, m, err)
	}
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	refused.Code, refused.Message = uint32(st.Code()), st.Message()
	return refused
}

func attachKind(m *meshnodev1.AttachRequest) string {
	switch m.GetMsg().(type) {
	case *meshnodev1.AttachRequest_Serve:
		return "serve"
	case *meshnodev1.AttachRequest_Respond:
		return "respond"
	case *meshnodev1.AttachRequest_Vote:
		return "vote"
	case nil:
		return "an empty message"
	}
	return fmt.Sprintf("%T", m.GetMsg())
}
