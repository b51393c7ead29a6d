package agent

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// answers is where a session sends what its handlers produce: on the
// Attach stream itself, or, to a node without Attach, as unary calls.
type answers interface {
	respond(ctx context.Context, r *meshnodev1.RespondRequest) error
	vote(ctx context.Context, v *meshnodev1.VoteRequest) error
}

// unaryAnswers sends each answer as its own Respond or Vote call.
type unaryAnswers struct{ c *Client }

func (u unaryAnswers) respond(ctx context.Context, r *meshnodev1.RespondRequest) error {
	_, err := u.c.invoke.Respond(ctx, r)
	return err
}

func (u unaryAnswers) vote(ctx context.Context, v *meshnodev1.VoteRequest) error {
	_, err := u.c.quorum.Vote(ctx, v)
	return err
}

// streamAnswers sends answers on the Attach stream. gRPC allows one sender
// at a time per stream, and handlers finish concurrently.
type streamAnswers struct {
	mu     sync.Mutex
	stream grpc.BidiStreamingClient[meshnodev1.AttachRequest, meshnodev1.ServeResponse]
}

func (s *streamAnswers) send(m *meshnodev1.AttachRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stream.Send(m); err != nil {
		// Send reports only that the stream is gone; why is what the
		// receive loop gets, and it reconnects.
		return fmt.Errorf("the serve stream broke before the answer was sent: %w", err)
	}
	return nil
}

func (s *streamAnswers) respond(_ context.Context, r *meshnodev1.RespondRequest) error {
	return s.send(&meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: r}})
}

func (s *streamAnswers) vote(_ context.Context, v *meshnodev1.VoteRequest) error {
	return s.send(&meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Vote{Vote: v}})
}

// openStream opens the agent's delivery stream: Attach when the node has
// it, Serve and unary answers otherwise. The first event is read here, so
// a node without Attach is found out before any delivery is lost; recv
// returns it first.
func (a *Agent) openStream(ctx context.Context, req *meshnodev1.ServeRequest) (recv func() (*meshnodev1.ServeResponse, error), ans answers, err error) {
	if !a.noAttach.Load() {
		recv, ans, err = a.attach(ctx, req)
		if status.Code(err) != codes.Unimplemented {
			return recv, ans, err
		}
		a.noAttach.Store(true)
		a.log.Info("the node has no Attach stream; answering with unary calls", "socket", a.client.socket)
	}
	stream, err := a.client.invoke.Serve(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return stream.Recv, unaryAnswers{a.client}, nil
}

func (a *Agent) attach(ctx context.Context, req *meshnodev1.ServeRequest) (func() (*meshnodev1.ServeResponse, error), answers, error) {
	stream, err := a.client.invoke.Attach(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := stream.Send(&meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Serve{Serve: req}}); err != nil {
		// The node's reason, if it gave one, comes with the first receive.
		if _, rerr := stream.Recv(); rerr != nil {
			return nil, nil, rerr
		}
		return nil, nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, nil, err
	}
	recv := func() (*meshnodev1.ServeResponse, error) {
		if ev := first; ev != nil {
			first = nil
			return ev, nil
		}
		return stream.Recv()
	}
	return recv, &streamAnswers{stream: stream}, nil
}
