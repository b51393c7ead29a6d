package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// maxQueuedRefusals bounds the refusals waiting to be sent on one Attach
// stream. An agent that keeps sending answers nobody waits for loses the
// surplus reports (they are logged), never the stream.
const maxQueuedRefusals = 64

// Attach is Serve with the answers (responses and votes) coming back on the
// same stream: one HTTP/2 stream per agent instead of one unary call per
// answer. The checks are Respond's and Vote's; the stream's owner is checked
// once, when it opens.
func (s *invokeService) Attach(stream grpc.BidiStreamingServer[meshnodev1.AttachRequest, meshnodev1.ServeResponse]) error {
	ctx := stream.Context()
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	first, err := firstMessage(stream, attachOpenTimeout)
	if err != nil {
		return err
	}
	req := first.GetServe()
	if req == nil {
		return status.Errorf(codes.InvalidArgument, "the first message on an Attach stream must be serve (got %s); answers may only follow it", attachKind(first))
	}
	n := s.n
	id := n.local.agentID(req.GetAgentId())
	if _, err := n.local.owned(id, cred); err != nil {
		return err
	}
	refusals := make(chan *meshnodev1.ServeResponse, maxQueuedRefusals)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		n.readAnswers(ctx, id, stream, refusals)
	}()
	return n.serveAgent(ctx, id, cred, req, stream.Send, refusals, ended)
}

// attachOpenTimeout bounds the wait for an Attach stream's serve message.
var attachOpenTimeout = 10 * time.Second

// firstMessage waits at most d for the stream's first message. A client that
// opens Attach and sends nothing would otherwise hold the stream, and a
// goroutine, for as long as its connection lives. On timeout the handler
// returns, which ends the stream and unblocks the receive.
func firstMessage(stream grpc.BidiStreamingServer[meshnodev1.AttachRequest, meshnodev1.ServeResponse], d time.Duration) (*meshnodev1.AttachRequest, error) {
	type received struct {
		m   *meshnodev1.AttachRequest
		err error
	}
	ch := make(chan received, 1)
	go func() {
		m, err := stream.Recv()
		ch <- received{m, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-t.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "no serve message within %v of opening the Attach stream; send serve first", d)
	}
}

// readAnswers takes the answers an attached agent sends until its side of
// the stream ends. A refused answer is queued as an AnswerRefused event.
func (n *Node) readAnswers(ctx context.Context, id string, stream grpc.BidiStreamingServer[meshnodev1.AttachRequest, meshnodev1.ServeResponse], refusals chan<- *meshnodev1.ServeResponse) {
	for {
		m, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				n.log.Debug("attach stream ended", "agent", id, "err", err)
			}
			return
		}
		refused := n.takeAttached(ctx, id, m)
		if refused == nil {
			continue
		}
		select {
		case refusals <- &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Refused{Refused: refused}}:
		default:
			n.log.Warn("dropping an answer refusal: agent keeps sending answers the node does not take",
				"agent", id, "call_id", refused.GetCallId(), "request_id", refused.GetRequestId(), "reason", refused.GetMessage())
		}
	}
}

// takeAttached hands one answer to whoever waits for it, or says why not.
func (n *Node) takeAttached(ctx context.Context, id string, m *meshnodev1.AttachRequest) *meshnodev1.AnswerRefused {
	var err error
	refused := &meshnodev1.AnswerRefused{}
	switch msg := m.GetMsg().(type) {
	case *meshnodev1.AttachRequest_Respond:
		refused.CallId = msg.Respond.GetCallId()
		if a := msg.Respond.GetAgentId(); a != "" && n.local.agentID(a) != id {
			err = status.Errorf(codes.PermissionDenied, "an answer for agent %s was sent on agent %s's stream; answer on the stream the call was delivered on", a, id)
		} else {
			err = n.acceptAnswer(id, msg.Respond)
		}
	case *meshnodev1.AttachRequest_Vote:
		refused.RequestId = msg.Vote.GetRequestId()
		if v := msg.Vote.GetVote().GetVoterAgentId(); n.local.agentID(v) != id {
			err = status.Errorf(codes.PermissionDenied, "a vote by agent %q was sent on agent %s's stream; an agent votes only for itself", v, id)
		} else {
			err = n.acceptVote(ctx, id, msg.Vote)
		}
	default:
		err = status.Errorf(codes.InvalidArgument, "%s is not an answer; after serve, an Attach stream carries only respond and vote", attachKind(m))
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
