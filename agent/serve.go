package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/codes"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// respondTimeout bounds one Respond. The answer is useless to the caller
// after its deadline anyway; this only stops a wedged node from pinning a
// handler goroutine forever.
const respondTimeout = 30 * time.Second

// Serve registers the agent, opens its Serve stream and handles the calls
// delivered on it, each in its own goroutine, at most MaxInFlight at once.
// When the node goes away (restart, upgrade, crash) Serve reconnects with
// ReconnectBackoff and registers again, logging each failed attempt; the
// node may also be started after the agent.
//
// Serve returns nil when ctx ends, after every running handler has returned
// (their contexts are cancelled). It returns an error without retrying when
// the configuration is invalid, when no capability was added (ErrNoHandlers),
// when the node refuses the agent (InvalidArgument, PermissionDenied,
// AlreadyExists: another process owns the name, ...), and ErrClosed after
// Close.
func (a *Agent) Serve(ctx context.Context) error {
	if err := a.init(); err != nil {
		return err
	}
	if !a.serving.CompareAndSwap(false, true) {
		return errAlreadyServing
	}
	defer a.serving.Store(false)
	if _, err := a.registerRequest(); err != nil {
		return err
	}
	s := &server{a: a, sem: make(chan struct{}, a.maxInFlight())}
	defer s.wg.Wait()
	for failures := 0; ; {
		ready, err := s.session(ctx)
		a.setReady(false)
		switch {
		case ctx.Err() != nil:
			return nil
		case a.isClosed():
			return ErrClosed
		case errors.Is(err, ErrNoHandlers) || permanent(err):
			return err
		}
		if ready {
			failures = 0
		}
		failures++
		d := a.ReconnectBackoff.delay(failures, a.rand)
		a.log.Warn("meshnode connection lost; reconnecting",
			"socket", a.client.socket, "attempt", failures, "retry_in", d.Round(time.Millisecond), "err", err)
		if !sleepCtx(ctx, d) {
			return nil
		}
	}
}

func (a *Agent) maxInFlight() int {
	if a.MaxInFlight > 0 {
		return a.MaxInFlight
	}
	return DefaultMaxInFlight
}

// server is the state of one Serve call, shared by its sessions (one session
// per connection to the node).
type server struct {
	a   *Agent
	sem chan struct{} // one token per running handler
	wg  sync.WaitGroup
}

// session registers, opens one Serve stream and dispatches its deliveries
// until it breaks. It reports whether the node confirmed the stream, which
// resets the reconnect backoff.
func (s *server) session(ctx context.Context) (ready bool, err error) {
	a := s.a
	if err := a.Register(ctx); err != nil {
		return false, err
	}
	// Cancelling sctx cancels every handler started on this stream: their
	// answers could not be delivered on it anyway.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	id := a.ID()
	stream, err := a.client.invoke.Serve(sctx, &meshnodev1.ServeRequest{AgentId: id, MaxInFlight: uint32(cap(s.sem))})
	if err != nil {
		return false, fmt.Errorf("agent: open serve stream for %q: %w", id, err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if isEOF(err) {
				err = errors.New("the node closed the serve stream")
			}
			return ready, fmt.Errorf("agent: serve stream for %q: %w", id, err)
		}
		switch e := ev.GetEvent().(type) {
		case *meshnodev1.ServeResponse_Ready:
			ready = true
			a.setReady(true)
			a.log.Info("agent ready", "id", id, "socket", a.client.socket)
		case *meshnodev1.ServeResponse_Call:
			s.dispatch(sctx, e.Call)
		default:
			// A newer node may send events this SDK does not know yet;
			// ignoring them keeps old agents working.
			a.log.Debug("ignoring unknown serve event", "event", fmt.Sprintf("%T", e))
		}
	}
}

// dispatch starts the handler for one delivery. It never blocks: the receive
// loop must keep reading so the node's other deliveries are not held up.
func (s *server) dispatch(sctx context.Context, d *meshnodev1.Delivery) {
	a := s.a
	h := a.handlerFor(d.GetCapability())
	if h == nil {
		s.reject(d, &Error{Code: codes.Unimplemented, Retryable: true,
			Message: fmt.Sprintf("agent %q does not handle capability %q", a.ID(), d.GetCapability())})
		return
	}
	// The node honours MaxInFlight and max_concurrency; these checks catch
	// the moments its count and ours disagree (right after a reconnect).
	select {
	case s.sem <- struct{}{}:
	default:
		s.reject(d, &Error{Code: codes.ResourceExhausted, Retryable: true,
			Message: fmt.Sprintf("agent %q is at MaxInFlight (%d calls)", a.ID(), cap(s.sem))})
		return
	}
	if limit := h.capability.MaxConcurrency; limit > 0 && int(h.inFlight.Add(1)) > limit {
		h.inFlight.Add(-1)
		<-s.sem
		s.reject(d, &Error{Code: codes.ResourceExhausted, Retryable: true,
			Message: fmt.Sprintf("agent %q is at MaxConcurrency (%d) for %q", a.ID(), limit, d.GetCapability())})
		return
	}
	s.wg.Go(func() {
		resp, err := s.run(sctx, h, d)
		// Free the slot before answering: the node counts the call as done
		// when Respond arrives and may deliver the next one at once.
		if h.capability.MaxConcurrency > 0 {
			h.inFlight.Add(-1)
		}
		<-s.sem
		s.respond(d.GetCallId(), resp, err)
	})
}

func (s *server) reject(d *meshnodev1.Delivery, e *Error) {
	s.wg.Go(func() { s.respond(d.GetCallId(), nil, e) })
}

// run calls the handler with a context that ends at the call's deadline or
// when the stream breaks, carries the caller's trace context and names the
// call as the parent of calls the handler makes.
func (s *server) run(sctx context.Context, h *handler, d *meshnodev1.Delivery) (resp *Response, err error) {
	req := requestFromDelivery(d)
	if !req.Deadline.IsZero() && !time.Now().Before(req.Deadline) {
		return nil, Errorf(codes.DeadlineExceeded, "call %s arrived after its deadline %s", req.CallID, req.Deadline.Format(time.RFC3339Nano))
	}
	ctx, cancel := context.WithCancel(sctx)
	if !req.Deadline.IsZero() {
		ctx, cancel = context.WithDeadline(sctx, req.Deadline)
	}
	defer cancel()
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(req.Metadata))
	ctx = withCallInfo(ctx, callInfo{callID: req.CallID, agentID: s.a.ID()})
	defer func() {
		if p := recover(); p != nil {
			s.a.log.Error("handler panicked", "capability", req.Capability, "call_id", req.CallID,
				"panic", p, "stack", string(debug.Stack()))
			resp, err = nil, Errorf(codes.Internal, "the handler for %q failed; details are in agent %q's log", req.Capability, s.a.ID())
		}
	}()
	return h.fn(ctx, req)
}

// respond sends the answer. It uses its own context: the handler's has
// usually ended (deadline) by the time an error answer is sent.
func (s *server) respond(callID string, resp *Response, err error) {
	req := &meshnodev1.RespondRequest{AgentId: s.a.ID(), CallId: callID}
	if err != nil {
		req.Result = &meshnodev1.RespondRequest_Error{Error: toCallError(err)}
	} else {
		req.Result = &meshnodev1.RespondRequest_Ok{Ok: &meshnodev1.CallResult{
			Payload:     resp.GetPayload(),
			ContentType: resp.GetContentType(),
			Metadata:    resp.GetMetadata(),
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), respondTimeout)
	defer cancel()
	if _, rerr := s.a.client.invoke.Respond(ctx, req); rerr != nil {
		s.a.log.Warn("could not deliver an answer to the node; the caller will see a failure or a retry",
			"call_id", callID, "err", rerr)
	}
}
