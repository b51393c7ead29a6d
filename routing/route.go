package routing

import (
	"context"
	"errors"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// outcome classifies an attempt for the measurements and the breaker.
type outcome int

const (
	outcomeSuccess   outcome = iota
	outcomeFailure           // the agent failed: counts against it
	outcomeTimeout           // the attempt's deadline passed: a failure, and slow
	outcomeNeutral           // the request was at fault (InvalidArgument, NotFound, ...)
	outcomeAbandoned         // the caller gave up: no verdict
)

func classify(callerCtx context.Context, err error) (outcome, codes.Code) {
	if err == nil {
		return outcomeSuccess, codes.OK
	}
	c := codeOf(err)
	if callerCtx.Err() != nil {
		return outcomeAbandoned, c
	}
	switch c {
	case codes.DeadlineExceeded:
		return outcomeTimeout, c
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DataLoss, codes.ResourceExhausted, codes.Unimplemented:
		return outcomeFailure, c
	case codes.Canceled:
		return outcomeAbandoned, c
	}
	return outcomeNeutral, c
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return status.Code(err)
}

// retrySafe: a handler that never started did nothing, so retrying cannot
// duplicate work (gRPC's transparent retry rule); one that started is
// retried only for a retryable code or an agent-marked failure, and only if
// the call is idempotent or carries an idempotency key.
func retrySafe(started bool, o outcome, c codes.Code, err error, req *Request, cfg RetryConfig) bool {
	marked := IsMarkedRetryable(err)
	if o == outcomeAbandoned || o == outcomeTimeout || (o == outcomeNeutral && !marked) {
		return false
	}
	if !started {
		return true
	}
	if !req.Meta.Idempotent && req.Meta.IdempotencyKey == "" {
		return false
	}
	return slices.Contains(cfg.RetryableCodes, c) || marked
}

// Route picks an agent for req among candidates and invokes it through inv,
// retrying on another agent when that is safe, the policy allows and the
// retry budget has room. Errors are gRPC status errors that also unwrap to
// this package's sentinels: NotFound (no agent offers the capability),
// Unavailable (none ready, all busy, all circuit-open), DeadlineExceeded,
// FailedPrecondition (cycle, hop limit), or the last attempt's own error.
// The Result's Attempts, Tried and TraceID are filled on error too.
func (r *Router) Route(ctx context.Context, req Request, candidates []Candidate, inv Invoker) (Result, error) {
	return r.route(ctx, req, candidates, inv, 0)
}

const maxFallbackDepth = 3

func (r *Router) route(ctx context.Context, req Request, cands []Candidate, inv Invoker, depth int) (Result, error) {
	if req.Policy.MaxHops == 0 {
		p := DefaultPolicy()
		p.Capability = req.Policy.Capability
		req.Policy = p
	}
	pol := &req.Policy
	name := pol.Name
	if req.Overrides.Policy != "" {
		name = req.Overrides.Policy
	}
	ctx, span := r.cfg.Tracer.Start(ctx, "route "+req.Capability, trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()
	// Attributes only for a span that is kept: building them for an
	// unsampled span was a visible share of a busy node's allocations.
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(attribute.String("meshnode.capability", req.Capability), attribute.String("meshnode.policy", string(name)),
			attribute.Int("meshnode.hops", req.Meta.Hops), attribute.Int("meshnode.candidates", len(cands)))
	}
	res, err := r.attempts(ctx, &req, cands, inv)
	res.TraceID = traceID(span)
	if err != nil && pol.Fallback != "" && pol.Fallback != req.Capability && r.cfg.Resolver != nil && depth < maxFallbackDepth &&
		(errors.Is(err, ErrAllCircuitsOpen) || errors.Is(err, ErrBelowQualityFloor)) {
		span.AddEvent("fallback", trace.WithAttributes(attribute.String("meshnode.fallback", pol.Fallback), attribute.String("reason", err.Error())))
		r.cfg.Logger.Debug("routing to fallback capability", "capability", req.Capability, "fallback", pol.Fallback, "reason", err)
		fc, fp, rerr := r.cfg.Resolver.Resolve(ctx, pol.Fallback)
		if rerr == nil {
			freq := Request{Capability: pol.Fallback, Meta: req.Meta, Policy: fp, Overrides: req.Overrides}
			freq.Overrides.Constraints, freq.Overrides.PreferredAgents = nil, nil
			fres, ferr := r.route(ctx, freq, fc, inv, depth+1)
			if ferr == nil {
				fres.Attempts += res.Attempts
				fres.Tried = append(res.Tried, fres.Tried...)
				fres.TraceID = res.TraceID
				return fres, nil
			}
			err = ferr
		}
	}
	if err != nil {
		if recording {
			span.SetStatus(otelcodes.Error, err.Error())
			span.SetAttributes(attribute.String("rpc.grpc.status_code", codeOf(err).String()))
		}
		return res, err
	}
	if recording {
		span.SetAttributes(attribute.String("meshnode.agent_id", res.Agent.AgentID), attribute.Int("meshnode.attempts", res.Attempts))
	}
	return res, nil
}

// deadlines returns the call's absolute deadline: the metadata's, else the
// default timeout, capped by ctx's deadline (translated to the router's clock).
func (r *Router) deadline(ctx context.Context, now time.Time, req *Request) time.Time {
	dl := req.Meta.Deadline
	if dl.IsZero() {
		dl = now.Add(req.Policy.Deadline.DefaultTimeout)
	}
	if d, ok := ctx.Deadline(); ok {
		if c := now.Add(time.Until(d)); c.Before(dl) {
			dl = c
		}
	}
	return dl
}

func deadlineError(capability string, left time.Duration, d DeadlineConfig) error {
	return newStatus(codes.DeadlineExceeded, ErrDeadline,
		"call to %q has %v left after this hop's %v reserve, below the %v minimum; give the call a longer deadline",
		capability, left.Round(time.Microsecond), d.HopReserve, d.MinRemaining)
}

func (r *Router) attempts(ctx context.Context, req *Request, cands []Candidate, inv Invoker) (Result, error) {
	pol := &req.Policy
	res := Result{Capability: req.Capability}
	if err := checkOutbound(req.Meta, pol); err != nil {
		return res, err
	}
	now := r.cfg.Clock.Now()
	deadline := r.deadline(ctx, now, req)
	r.recordCall(now, req.Capability, pol.Retry)
	var lastErr error
	for n := 1; ; n++ {
		now = r.cfg.Clock.Now()
		attemptDL := deadline.Add(-pol.Deadline.HopReserve)
		if left := attemptDL.Sub(now); left < pol.Deadline.MinRemaining {
			if lastErr != nil {
				return res, lastErr
			}
			return res, deadlineError(req.Capability, left, pol.Deadline)
		}
		c, ep, probe, err := r.pick(now, req, pol, cands, res.Tried)
		r.cfg.Observer.Decided(pol.Name, err == nil)
		if err != nil {
			if lastErr != nil {
				return res, lastErr // the failure that made us retry says more
			}
			return res, err
		}
		res.Attempts, res.Tried = n, append(res.Tried, c.AgentID)
		answer, started, err := r.invoke(ctx, req, c, n, attemptDL, ep, probe, inv)
		if err == nil {
			res.Agent, res.Answer = c, answer
			return res, nil
		}
		lastErr = err
		o, code := classify(ctx, err)
		if !retrySafe(started, o, code, err, req, pol.Retry) || n >= pol.Retry.MaxAttempts {
			return res, err
		}
		now = r.cfg.Clock.Now()
		wait := r.backoff(n, pol.Retry)
		if now.Add(wait).After(attemptDL.Add(-pol.Deadline.MinRemaining)) {
			return res, err // no time left for another attempt
		}
		if !r.tryRetry(now, req.Capability, pol.Retry) {
			trace.SpanFromContext(ctx).AddEvent("retry budget exhausted")
			return res, err
		}
		if serr := r.cfg.Clock.Sleep(ctx, wait); serr != nil {
			return res, err
		}
	}
}

// invoke runs one attempt inside its span and records the outcome.
func (r *Router) invoke(ctx context.Context, req *Request, c Candidate, n int, dl time.Time, ep *endpoint, probe bool, inv Invoker) (*meshnodev1.CallResult, bool, error) {
	actx, span := r.cfg.Tracer.Start(ctx, "attempt "+req.Capability, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(attribute.String("meshnode.agent_id", c.AgentID), attribute.String("meshnode.node", c.Node),
			attribute.Int("meshnode.attempt", n), attribute.Bool("meshnode.probe", probe))
	}
	start := r.cfg.Clock.Now()
	actx, cancel := context.WithTimeout(actx, dl.Sub(start))
	defer cancel()
	meta := req.Meta
	meta.Chain = append(slices.Clone(req.Meta.Chain), c.AgentID)
	meta.Hops++
	meta.Deadline = dl
	meta.Attempt = n
	meta.TraceContext = InjectTraceContext(actx)
	answer, started, err := inv.Invoke(actx, Attempt{Candidate: c, Number: n, Deadline: dl, Meta: meta})
	end := r.cfg.Clock.Now()
	o, code := classify(ctx, err)
	r.finish(ep, &req.Policy, probe, start, end, o)
	if recording {
		span.SetAttributes(attribute.Bool("meshnode.started", started), attribute.String("rpc.grpc.status_code", code.String()))
		if err != nil {
			span.SetStatus(otelcodes.Error, err.Error())
		}
	}
	return answer, started, err
}
