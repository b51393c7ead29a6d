package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// respondTimeout bounds one Respond or Vote. The answer is useless to the
// caller after its deadline anyway; this only stops a wedged node from
// pinning a handler goroutine forever.
const respondTimeout = 30 * time.Second

// Why a handler's ctx ended, as reported by context.Cause(ctx).
var (
	// ErrCallCanceled: the caller gave up (its own deadline or cancel) and
	// the node withdrew the call. The answer is not sent.
	ErrCallCanceled = errors.New("agent: the caller gave up on this call")
	// ErrDisconnected: the Serve stream to the node broke; the answer could
	// not be delivered. Serve reconnects on its own.
	ErrDisconnected = errors.New("agent: disconnected from the node")
)

// Serve registers the agent, opens its delivery stream (see openStream) and
// handles the calls and vote requests delivered on it, each in its own
// goroutine, at most MaxInFlight calls and MaxVotesInFlight vote handlers
// at once (a vote request beyond that is shed: answered with Abstain). When the node goes away
// (restart, upgrade, crash) Serve reconnects with ReconnectBackoff and
// registers again, logging each failed attempt; the node may also be
// started after the agent.
//
// Serve returns nil when ctx ends, after every running handler has returned
// (their contexts are cancelled). It returns an error without retrying when
// the configuration is invalid, when nothing was added with Handle or
// HandleVote (ErrNoHandlers), when the node refuses the agent
// (InvalidArgument, PermissionDenied, AlreadyExists: another process owns
// the name, ...), and ErrClosed after Close.
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
	s := &server{a: a, sem: make(chan struct{}, a.maxInFlight()), votes: make(chan struct{}, a.maxVotesInFlight())}
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

// maxInFlight is the limit Serve enforces and announces to the node:
// MaxInFlight, tightened to the sum of the capabilities' MaxConcurrency when
// every capability has one, since the agent can never run more than that.
func (a *Agent) maxInFlight() int {
	limit := a.MaxInFlight
	if limit <= 0 {
		limit = DefaultMaxInFlight
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	sum := 0
	for _, h := range a.handlers {
		if h.capability.MaxConcurrency <= 0 {
			return limit
		}
		sum += h.capability.MaxConcurrency
	}
	if sum > 0 {
		return min(limit, sum)
	}
	return limit
}

// server is the state of one Serve call, shared by its sessions (one session
// per connection to the node).
type server struct {
	a     *Agent
	sem   chan struct{} // one token per running call handler
	votes chan struct{} // one token per running vote handler
	shed  atomic.Int64  // vote requests shed since Serve started
	wg    sync.WaitGroup
}

// session is one delivery stream: the calls running on it, so the node can
// withdraw them, and where their answers go.
type session struct {
	ans answers
	// maxMessage is what the node's ServeReady says it reads (0: unstated).
	maxMessage atomic.Uint32
	mu         sync.Mutex
	calls      map[string]*runningCall
}

type runningCall struct {
	cancel    context.CancelCauseFunc
	withdrawn atomic.Bool
}

// session registers, opens one delivery stream and dispatches its events until
// it breaks. It reports whether the node confirmed the stream, which resets
// the reconnect backoff.
func (s *server) session(ctx context.Context) (ready bool, err error) {
	a := s.a
	if err := a.Register(ctx); err != nil {
		return false, err
	}
	// Cancelling sctx cancels every handler started on this stream: their
	// answers could not be delivered on it anyway.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(ErrDisconnected)
	id := a.ID()
	recv, ans, err := a.openStream(sctx, &meshnodev1.ServeRequest{AgentId: id, MaxInFlight: uint32(cap(s.sem))})
	if err != nil {
		return false, fmt.Errorf("agent: open serve stream for %q: %w", id, err)
	}
	ss := &session{ans: ans, calls: map[string]*runningCall{}}
	for {
		ev, err := recv()
		if err != nil {
			if isEOF(err) {
				err = errors.New("the node closed the serve stream")
			}
			return ready, fmt.Errorf("agent: serve stream for %q: %w", id, err)
		}
		switch e := ev.GetEvent().(type) {
		case *meshnodev1.ServeResponse_Ready:
			ss.maxMessage.Store(e.Ready.GetMaxMessageBytes())
			ready = true
			a.setReady(true)
			a.log.Info("agent ready", "id", id, "socket", a.client.socket)
		case *meshnodev1.ServeResponse_Call:
			s.dispatch(sctx, ss, e.Call)
		case *meshnodev1.ServeResponse_Cancel:
			ss.withdraw(e.Cancel)
		case *meshnodev1.ServeResponse_Vote:
			s.dispatchVote(sctx, ss, e.Vote)
		case *meshnodev1.ServeResponse_Refused:
			r := e.Refused
			a.log.Warn("the node refused an answer", "call_id", r.GetCallId(), "request_id", r.GetRequestId(),
				"code", codes.Code(r.GetCode()), "reason", r.GetMessage())
		default:
			// A newer node may send events this SDK does not know yet;
			// ignoring them keeps old agents working.
			a.log.Debug("ignoring unknown serve event", "event", fmt.Sprintf("%T", e))
		}
	}
}

// withdraw cancels a running call the caller gave up on. A cancel for a
// call that already finished is normal (the answer and the cancel crossed).
func (ss *session) withdraw(c *meshnodev1.CallCancel) {
	ss.mu.Lock()
	rc := ss.calls[c.GetCallId()]
	ss.mu.Unlock()
	if rc != nil {
		rc.withdrawn.Store(true)
		rc.cancel(fmt.Errorf("%w: %s", ErrCallCanceled, c.GetReason()))
	}
}

func (ss *session) track(callID string, cancel context.CancelCauseFunc) *runningCall {
	rc := &runningCall{cancel: cancel}
	ss.mu.Lock()
	ss.calls[callID] = rc
	ss.mu.Unlock()
	return rc
}

func (ss *session) untrack(callID string) {
	ss.mu.Lock()
	delete(ss.calls, callID)
	ss.mu.Unlock()
}

// dispatch starts the handler for one delivery. It never blocks: the receive
// loop must keep reading so the node's other deliveries are not held up.
func (s *server) dispatch(sctx context.Context, ss *session, d *meshnodev1.Delivery) {
	a := s.a
	h := a.handlerFor(d.GetCapability())
	if h == nil {
		s.reject(ss, d, &Error{Code: codes.Unimplemented, Retryable: true,
			Message: fmt.Sprintf("agent %q does not handle capability %q", a.ID(), d.GetCapability())})
		return
	}
	// The node honours MaxInFlight; these checks catch the moments its
	// count and ours disagree (right after a reconnect) and enforce the
	// per-capability MaxConcurrency.
	select {
	case s.sem <- struct{}{}:
	default:
		s.reject(ss, d, &Error{Code: codes.ResourceExhausted, Retryable: true,
			Message: fmt.Sprintf("agent %q is at MaxInFlight (%d calls)", a.ID(), cap(s.sem))})
		return
	}
	if limit := h.capability.MaxConcurrency; limit > 0 && int(h.inFlight.Add(1)) > limit {
		h.inFlight.Add(-1)
		<-s.sem
		s.reject(ss, d, &Error{Code: codes.ResourceExhausted, Retryable: true,
			Message: fmt.Sprintf("agent %q is at MaxConcurrency (%d) for %q", a.ID(), limit, d.GetCapability())})
		return
	}
	ctx, cancel := context.WithCancelCause(sctx)
	rc := ss.track(d.GetCallId(), cancel)
	s.wg.Go(func() {
		defer ss.untrack(d.GetCallId())
		resp, err := s.run(ctx, h, d)
		cancel(nil)
		// Free the slot before answering: the node counts the call as done
		// when Respond arrives and may deliver the next one at once.
		if h.capability.MaxConcurrency > 0 {
			h.inFlight.Add(-1)
		}
		<-s.sem
		if rc.withdrawn.Load() || errors.Is(err, errStreamed) {
			return // the node no longer waits for this answer, or has it
		}
		s.respond(ss, d.GetCallId(), resp, err)
	})
}

func (s *server) reject(ss *session, d *meshnodev1.Delivery, e *Error) {
	s.wg.Go(func() { s.respond(ss, d.GetCallId(), nil, e) })
}

// run calls the handler with a context that ends at the call's deadline,
// when the caller gives up or when the stream breaks; it carries the
// caller's trace context and names the call as the parent of calls the
// handler makes.
func (s *server) run(ctx context.Context, h *handler, d *meshnodev1.Delivery) (resp *Response, err error) {
	req := requestFromDelivery(d)
	if !req.Deadline.IsZero() {
		if !time.Now().Before(req.Deadline) {
			return nil, Errorf(codes.DeadlineExceeded, "call %s arrived after its deadline %s", req.CallID, req.Deadline.Format(time.RFC3339Nano))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, req.Deadline)
		defer cancel()
	}
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(req.Metadata))
	ctx = withCallInfo(ctx, callInfo{callID: req.CallID, agentID: s.a.ID()})
	defer func() {
		if p := recover(); p != nil {
			s.a.log.Error("handler panicked", "capability", req.Capability, "call_id", req.CallID,
				"panic", p, "stack", string(debug.Stack()))
			resp, err = nil, Errorf(codes.Internal, "the handler for %q failed; details are in agent %q's log", req.Capability, s.a.ID())
		}
	}()
	return s.call(ctx, h, req, d.GetStreaming())
}

// answerFraming is room for what wraps a RespondRequest on the wire (the
// AttachRequest around it).
const answerFraming = 16

// respond sends the answer. It uses its own context: the handler's has
// usually ended (deadline) by the time an error answer is sent.
func (s *server) respond(ss *session, callID string, resp *Response, err error) {
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
	if limit := int(ss.maxMessage.Load()); limit > 0 {
		if size := proto.Size(req) + answerFraming; size > limit {
			// The node would refuse the message unread (on an Attach
			// stream, by ending the stream and every call on it) and the
			// caller would wait out its deadline: tell the caller instead.
			req.Result = &meshnodev1.RespondRequest_Error{Error: &meshnodev1.CallError{Code: uint32(codes.ResourceExhausted),
				Message: fmt.Sprintf("agent %s's response is %d bytes, over the node's message limit of %d", s.a.ID(), size, limit)}}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), respondTimeout)
	defer cancel()
	if rerr := ss.ans.respond(ctx, req); rerr != nil {
		s.a.log.Warn("could not deliver an answer to the node; the caller will see a failure or a retry",
			"call_id", callID, "err", rerr)
	}
}
