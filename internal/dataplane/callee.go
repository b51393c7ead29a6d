package dataplane

import (
	"context"
	"errors"
	"strings"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errNodeDied is the cancellation cause of calls to a node gossip declared dead.
var errNodeDied = errors.New("node declared dead")

// forward sends one attempt to the node of a remote agent.
func (p *Plane) forward(ctx context.Context, agent routing.Candidate, d *meshnodev1.Delivery, meta *meshnodev1.RoutingMetadata) (*meshnodev1.CallResult, bool, error) {
	addr, ok := p.cfg.Catalog.NodeAddress(agent.Node)
	if !ok {
		return nil, false, status.Errorf(codes.Unavailable, "node %s of agent %s has no known address", agent.Node, agent.AgentID)
	}
	// A call in flight on a node that gossip then declares dead would
	// otherwise wait out the caller's whole deadline: cancel it at once so
	// the router can fail over (or fail fast).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer p.inflight.track(agent.Node, cancel)()
	var resp meshnodev1.ForwardCallResponse
	err := p.cfg.Peers.Invoke(ctx, addr, MethodForwardCall, &meshnodev1.ForwardCallRequest{TargetAgentId: agent.AgentID, Delivery: d, Routing: meta}, &resp)
	if err != nil {
		// The remote node reports "never delivered" as Unavailable or
		// ResourceExhausted; anything else may have reached the agent.
		c := status.Code(err)
		started := c != codes.Unavailable && c != codes.ResourceExhausted
		if errors.Is(context.Cause(ctx), errNodeDied) {
			return nil, true, status.Errorf(codes.Unavailable, "node %s of agent %s was declared dead while the call was in flight", agent.Node, agent.AgentID)
		}
		if ctx.Err() != nil {
			return nil, true, ctxStatus(ctx, "calling "+agent.AgentID)
		}
		return nil, started, err
	}
	return answerOf(resp.GetOk(), resp.GetError())
}

// Receive is the callee half: a peer node, authenticated as fromNode by
// mTLS, asks this node to deliver a call to one of its agents. The call's
// metadata is checked once (routing.CheckForwarded, against the
// capability's policy) before anything reaches the agent.
func (p *Plane) Receive(ctx context.Context, fromNode string, req *meshnodev1.ForwardCallRequest) (*meshnodev1.ForwardCallResponse, error) {
	in, err := p.inbound(ctx, fromNode, req)
	if err != nil {
		return nil, err
	}
	ctx, _, done := p.inboundContext(ctx, in)
	defer done()
	start := p.cfg.Clock.Now()
	answer, _, err := p.deliver(ctx, in.target, in.d, in.cc)
	p.logCall(ctx, callLine{side: "callee", fromNode: fromNode, caller: in.d.GetCallerAgentId(), callee: in.target, capability: in.d.GetCapability(),
		attempt: int(in.d.GetAttempt()), latency: p.cfg.Clock.Now().Sub(start), err: err})
	var ae *agentError
	switch {
	case errors.As(err, &ae):
		return &meshnodev1.ForwardCallResponse{Result: &meshnodev1.ForwardCallResponse_Error{Error: ae.proto()}}, nil
	case err != nil:
		return nil, err
	}
	return &meshnodev1.ForwardCallResponse{Result: &meshnodev1.ForwardCallResponse_Ok{Ok: answer}}, nil
}

// inboundContext bounds a forwarded call by its deadline and starts its
// inbound span; the handler's span is a child of this node's, so the
// delivery carries our trace context. done ends both.
func (p *Plane) inboundContext(ctx context.Context, in inboundCall) (context.Context, trace.Span, func()) {
	ctx, cancel := context.WithDeadline(ctx, in.meta.Deadline)
	ctx, span := routing.StartInbound(ctx, p.cfg.Tracer, in.d.GetCapability(), in.meta.TraceContext)
	in.d.Metadata = mergeTrace(in.d.GetMetadata(), routing.InjectTraceContext(ctx))
	return ctx, span, func() { span.End(); cancel() }
}

// inboundCall is a forwarded call that passed this node's checks.
type inboundCall struct {
	target string
	d      *meshnodev1.Delivery
	meta   routing.Metadata
	cc     hub.CallContext
}

// inbound checks a call a peer, fromNode, forwarded, unary or streaming,
// once: its target is here, its metadata passes routing.CheckForwarded
// against the capability's policy, its caller is an agent of fromNode
// (verifyCaller), and its payload is within the limit. The delivery's
// caller and chain are replaced by what was verified.
func (p *Plane) inbound(ctx context.Context, fromNode string, req *meshnodev1.ForwardCallRequest) (inboundCall, error) {
	target := req.GetTargetAgentId()
	if !strings.HasPrefix(target, p.cfg.LocalNode+"/") {
		return inboundCall{}, status.Errorf(codes.NotFound, "agent %s is not attached to node %s", target, p.cfg.LocalNode)
	}
	d := req.GetDelivery()
	if d == nil {
		return inboundCall{}, status.Error(codes.InvalidArgument, "forwarded call has no delivery")
	}
	meta, err := routing.MetadataFromProto(req.GetRouting())
	if err != nil {
		return inboundCall{}, status.Error(codes.InvalidArgument, err.Error())
	}
	// A policy that cannot be read leaves the built-in limits in force.
	pol, _ := p.cfg.Catalog.PolicyFor(ctx, d.GetCapability())
	if err := routing.CheckForwarded(p.cfg.Clock.Now(), meta, target, pol); err != nil {
		p.cfg.Observer.Refused(refusalOf(err))
		return inboundCall{}, err
	}
	if len(d.GetPayload()) > p.cfg.MaxPayload {
		return inboundCall{}, status.Errorf(codes.InvalidArgument, "payload is %d bytes, over node %s's limit of %d", len(d.GetPayload()), p.cfg.LocalNode, p.cfg.MaxPayload)
	}
	chain := meta.Chain[:len(meta.Chain)-1]
	caller, err := verifyCaller(fromNode, chain, d)
	if err != nil {
		p.cfg.Observer.Refused(RefusedCallerIdentity)
		return inboundCall{}, err
	}
	// Authoritative: the caller's node may be modified and skip its check.
	if err := p.authorize(ctx, caller, d.GetCapability(), target); err != nil {
		if status.Code(err) == codes.PermissionDenied {
			p.cfg.Observer.Refused(RefusedAuthz)
			// Said so the caller can tell which end refused: a refusal
			// here means its own node let the call out.
			return inboundCall{}, status.Errorf(codes.PermissionDenied, "refused at node %s, the callee's: %s", p.cfg.LocalNode, status.Convert(err).Message())
		}
		return inboundCall{}, err
	}
	d.CallerAgentId, d.Chain = caller, chain
	return inboundCall{target: target, d: d, meta: meta, cc: hub.CallContext{Chain: chain, Hops: uint32(meta.Hops), Deadline: meta.Deadline}}, nil
}

// ctxStatus converts a context's end into the matching gRPC status.
func ctxStatus(ctx context.Context, doing string) error {
	if ctx.Err() == context.DeadlineExceeded {
		return status.Errorf(codes.DeadlineExceeded, "deadline passed while %s", doing)
	}
	return status.Errorf(codes.Canceled, "caller cancelled while %s", doing)
}
