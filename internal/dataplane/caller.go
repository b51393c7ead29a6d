package dataplane

import (
	"context"
	"errors"
	"time"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// call is one Call after validation: the request, who makes it, and the
// routing request whose metadata (chain, hops, deadline) is computed here
// once and carried by the router into every attempt.
type call struct {
	req    *meshnodev1.CallRequest
	caller string // calling agent id, "" if not an agent
	route  routing.Request
}

// Call routes one call from a process on the socket, owner, to the best
// agent for its capability and returns the answer.
func (p *Plane) Call(ctx context.Context, owner hub.Owner, req *meshnodev1.CallRequest) (*meshnodev1.CallResponse, error) {
	c, err := p.plan(ctx, owner, req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithDeadline(ctx, c.route.Meta.Deadline)
	defer cancel()
	cands, pol, err := p.cfg.Catalog.Resolve(ctx, req.GetCapability())
	if err != nil {
		return nil, err
	}
	c.route.Policy = pol
	// A call made by a handler continues the handler's trace.
	ctx = routing.ExtractTraceContext(ctx, req.GetMetadata())
	start := p.cfg.Clock.Now()
	var last routing.Attempt // the router makes attempts one after another
	res, err := p.cfg.Router.Route(ctx, c.route, cands, routing.AnswerFunc(func(ctx context.Context, a routing.Attempt) (*meshnodev1.CallResult, bool, error) {
		last = a
		return p.attempt(ctx, c, a)
	}))
	took := p.cfg.Clock.Now().Sub(start)
	p.cfg.Catalog.ObserveCall(took, err == nil)
	p.cfg.Observer.CallMade(CallEvent{Caller: c.caller, Callee: last.Candidate.AgentID, Capability: req.GetCapability(),
		Code: outcomeCode(err), Latency: took, Attempts: res.Attempts})
	p.logCall(ctx, callLine{side: "caller", caller: c.caller, callee: last.Candidate.AgentID, capability: req.GetCapability(),
		attempt: last.Number, latency: took, err: err})
	if err != nil {
		return nil, err
	}
	return &meshnodev1.CallResponse{
		Payload:     res.Answer.GetPayload(),
		ContentType: res.Answer.GetContentType(),
		Metadata:    res.Answer.GetMetadata(),
		AgentId:     res.Agent.AgentID,
		Node:        res.Agent.Node,
		Attempts:    uint32(res.Attempts),
		TraceId:     res.TraceID,
	}, nil
}

// plan validates a Call and works out its deadline and chain: a call made
// by a handler (parent_call_id) inherits its parent's chain, hops and
// deadline; a call made for an agent (caller_agent_id) starts a chain.
// Either must be owned by the calling process.
func (p *Plane) plan(ctx context.Context, owner hub.Owner, req *meshnodev1.CallRequest) (*call, error) {
	if req.GetCapability() == "" {
		return nil, status.Error(codes.InvalidArgument, "capability: must not be empty")
	}
	if len(req.GetPayload()) > p.cfg.MaxPayload {
		return nil, status.Errorf(codes.InvalidArgument, "payload is %d bytes, over the node's limit of %d (max_payload)", len(req.GetPayload()), p.cfg.MaxPayload)
	}
	overrides, err := routing.OverridesFromProto(req.GetRouting())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	now := p.cfg.Clock.Now()
	deadline := now.Add(p.cfg.CallTimeout)
	if req.GetDeadline() != nil {
		deadline = req.GetDeadline().AsTime()
	}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c := &call{req: req}
	meta := routing.Metadata{IdempotencyKey: req.GetIdempotencyKey()}
	if pid := req.GetParentCallId(); pid != "" {
		parent, ok := p.cfg.Local.Parent(pid)
		if !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "parent_call_id %q is not a call in progress on this node", pid)
		}
		if err := p.cfg.Local.Owned(parent.AgentID, owner); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "parent_call_id %q belongs to agent %s, which this process does not own", pid, parent.AgentID)
		}
		c.caller = parent.AgentID
		meta.Chain = append(append([]string(nil), parent.Chain...), parent.AgentID)
		meta.Hops = int(parent.Hops)
		if parent.Deadline.Before(deadline) {
			deadline = parent.Deadline
		}
	} else if id := req.GetCallerAgentId(); id != "" {
		id = p.cfg.Local.AgentID(id)
		if err := p.cfg.Local.Owned(id, owner); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "caller_agent_id %s: %v", id, status.Convert(err).Message())
		}
		c.caller = id
		meta.Chain = []string{id}
	}
	if !deadline.After(now) {
		return nil, status.Errorf(codes.DeadlineExceeded, "the call's deadline %s has already passed", deadline.Format(time.RFC3339Nano))
	}
	meta.Deadline = deadline
	c.route = routing.Request{Capability: req.GetCapability(), Constraints: overrides.Constraints, Overrides: overrides, Meta: meta}
	return c, nil
}

// attempt runs one of the router's attempts on its agent, here or on its
// node. Chain, hops, deadline, attempt number and trace context are the
// router's, as the Attempt carries them.
func (p *Plane) attempt(ctx context.Context, c *call, a routing.Attempt) (*meshnodev1.CallResult, bool, error) {
	// Refused before any network; PermissionDenied is not retried, so a
	// denied call does not fail over to another agent.
	if err := p.authorize(ctx, c.caller, c.req.GetCapability(), a.Candidate.AgentID); err != nil {
		return nil, false, err
	}
	d := c.delivery(a)
	var (
		answer  *meshnodev1.CallResult
		started bool
		err     error
	)
	if a.Candidate.Node == p.cfg.LocalNode {
		answer, started, err = p.deliver(ctx, a.Candidate.AgentID, d, localContext(d, a))
	} else {
		answer, started, err = p.forward(ctx, a.Candidate, d, a.Meta.ToProto())
	}
	var ae *agentError
	if errors.As(err, &ae) && ae.retryable {
		err = routing.MarkRetryable(err)
	}
	return answer, started, err
}

// delivery is the call as attempt a's agent sees it.
func (c *call) delivery(a routing.Attempt) *meshnodev1.Delivery {
	chain := a.Meta.Chain // ends with the callee
	return &meshnodev1.Delivery{
		Capability:     c.req.GetCapability(),
		Payload:        c.req.GetPayload(),
		ContentType:    c.req.GetContentType(),
		Deadline:       timestamppb.New(a.Deadline),
		Metadata:       c.req.GetMetadata(), // read-only here; a remote node adds its own trace context
		CallerAgentId:  c.caller,
		Chain:          chain[:len(chain)-1],
		Attempt:        uint32(a.Number),
		IdempotencyKey: c.req.GetIdempotencyKey(),
	}
}

// localContext readies d for an agent on this node (the attempt's trace
// context) and returns what calls its handler makes inherit.
func localContext(d *meshnodev1.Delivery, a routing.Attempt) hub.CallContext {
	d.Metadata = mergeTrace(d.Metadata, a.Meta.TraceContext)
	return hub.CallContext{Chain: d.Chain, Hops: uint32(a.Meta.Hops), Deadline: a.Deadline}
}

// deliver hands a call to a local agent and waits for its answer. The
// hub's Unavailable and ResourceExhausted mean it never reached the agent.
func (p *Plane) deliver(ctx context.Context, agentID string, d *meshnodev1.Delivery, cc hub.CallContext) (*meshnodev1.CallResult, bool, error) {
	start := p.cfg.Clock.Now()
	p.cfg.Observer.Serving(agentID, 1)
	r, err := p.cfg.Local.Deliver(ctx, agentID, d, cc)
	took := p.cfg.Clock.Now().Sub(start)
	p.cfg.Observer.Serving(agentID, -1)
	p.cfg.Catalog.Observe(agentID, took, err == nil && r.GetError() == nil)
	var (
		answer  *meshnodev1.CallResult
		started bool
	)
	if err != nil {
		c := status.Code(err)
		started = c != codes.Unavailable && c != codes.ResourceExhausted
	} else {
		answer, started, err = answerOf(r.GetOk(), r.GetError())
	}
	p.cfg.Observer.CallServed(CallEvent{Caller: d.GetCallerAgentId(), Callee: agentID, Capability: d.GetCapability(),
		Code: outcomeCode(err), Latency: took, Attempts: int(d.GetAttempt())})
	return answer, started, err
}

// answerOf turns an agent's answer into the attempt's result.
func answerOf(ok *meshnodev1.CallResult, failed *meshnodev1.CallError) (*meshnodev1.CallResult, bool, error) {
	if failed != nil {
		return nil, true, agentErrorFrom(failed)
	}
	if ok == nil {
		return &meshnodev1.CallResult{}, true, nil
	}
	return ok, true, nil
}

// mergeTrace returns meta with the W3C trace headers replaced by trace's.
func mergeTrace(meta, trace map[string]string) map[string]string {
	if len(trace) == 0 {
		return meta
	}
	out := make(map[string]string, len(meta)+len(trace))
	for k, v := range meta {
		out[k] = v
	}
	for k, v := range trace {
		out[k] = v
	}
	return out
}
