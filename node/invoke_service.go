package node

import (
	"context"
	"fmt"
	"time"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type invokeService struct {
	meshnodev1.UnimplementedInvokeServiceServer
	n *Node
}

// agentError is a failure the serving agent reported. It keeps the agent's
// retryable mark, which routing uses to decide whether to try elsewhere.
type agentError struct {
	code      codes.Code
	msg       string
	retryable bool
}

func (e *agentError) Error() string { return fmt.Sprintf("agent error (%s): %s", e.code, e.msg) }

// GRPCStatus lets the error cross the agent API with the agent's code.
func (e *agentError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

func agentErrorFrom(ce *meshnodev1.CallError) *agentError {
	code := codes.Code(ce.GetCode())
	if code == codes.OK || code > codes.Unauthenticated {
		code = codes.Unknown
	}
	return &agentError{code: code, msg: ce.GetMessage(), retryable: ce.GetRetryable()}
}

// callPlan is one Call after validation: what to invoke, with what, until when.
type callPlan struct {
	req      *meshnodev1.CallRequest
	caller   string // calling agent id, "" if not an agent
	chain    []string
	hops     uint32
	deadline time.Time
}

func (s *invokeService) Call(ctx context.Context, req *meshnodev1.CallRequest) (*meshnodev1.CallResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	plan, err := s.n.planCall(ctx, cred, req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithDeadline(ctx, plan.deadline)
	defer cancel()
	return s.n.route(ctx, plan)
}

// planCall validates a Call and works out its deadline and call chain.
func (n *Node) planCall(ctx context.Context, cred PeerCred, req *meshnodev1.CallRequest) (*callPlan, error) {
	if req.GetCapability() == "" {
		return nil, status.Error(codes.InvalidArgument, "capability: must not be empty")
	}
	if len(req.GetPayload()) > n.cfg.MaxPayload {
		return nil, status.Errorf(codes.InvalidArgument, "payload is %d bytes, over the node's limit of %d (max_payload)", len(req.GetPayload()), n.cfg.MaxPayload)
	}
	now := time.Now()
	deadline := now.Add(n.cfg.CallTimeout)
	if req.GetDeadline() != nil {
		deadline = req.GetDeadline().AsTime()
	}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	plan := &callPlan{req: req}
	if pid := req.GetParentCallId(); pid != "" {
		parent, ok := n.hub.Parent(pid)
		if !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "parent_call_id %q is not a call in progress on this node", pid)
		}
		if err := n.hub.Owned(parent.AgentID, hub.Owner(cred)); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "parent_call_id %q belongs to agent %s, which this process does not own", pid, parent.AgentID)
		}
		plan.caller = parent.AgentID
		plan.chain = append(append([]string(nil), parent.Chain...), parent.AgentID)
		plan.hops = parent.Hops
		if parent.Deadline.Before(deadline) {
			deadline = parent.Deadline
		}
	} else if c := req.GetCallerAgentId(); c != "" {
		id := n.hub.AgentID(c)
		if err := n.hub.Owned(id, hub.Owner(cred)); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "caller_agent_id %s: %v", id, status.Convert(err).Message())
		}
		plan.caller = id
		plan.chain = []string{id}
	}
	if !deadline.After(now) {
		return nil, status.Errorf(codes.DeadlineExceeded, "the call's deadline %s has already passed", deadline.Format(time.RFC3339Nano))
	}
	plan.deadline = deadline
	return plan, nil
}

// invokeAgent runs one attempt against one agent, local or remote. started
// reports whether the agent may have begun work (so a retry is only safe for
// idempotent calls).
func (n *Node) invokeAgent(ctx context.Context, plan *callPlan, agent *meshnodev1.Agent, attempt uint32, deadline time.Time, traceCtx map[string]string) (*meshnodev1.CallResult, bool, error) {
	chain := append(append([]string(nil), plan.chain...), agent.GetId())
	d := &meshnodev1.Delivery{
		Capability:     plan.req.GetCapability(),
		Payload:        plan.req.GetPayload(),
		ContentType:    plan.req.GetContentType(),
		Deadline:       timestamppb.New(deadline),
		Metadata:       plan.req.GetMetadata(), // read-only here; a remote node adds its own trace context
		CallerAgentId:  plan.caller,
		Chain:          chain[:len(chain)-1],
		Attempt:        attempt,
		IdempotencyKey: plan.req.GetIdempotencyKey(),
	}
	if agent.GetNode() == n.cfg.Name {
		d.Metadata = mergeTrace(d.Metadata, traceCtx)
		start := time.Now()
		r, err := n.hub.Deliver(ctx, agent.GetId(), d, hub.CallContext{Chain: chain[:len(chain)-1], Hops: plan.hops + 1, Deadline: deadline})
		n.catalog.Observe(agent.GetId(), time.Since(start), err == nil && r.GetError() == nil)
		if err != nil {
			return nil, status.Code(err) != codes.Unavailable && status.Code(err) != codes.ResourceExhausted, err
		}
		return respondResult(r)
	}
	return n.forwardCall(ctx, agent, d, &meshnodev1.RoutingMetadata{
		Chain:          chain,
		Hops:           plan.hops + 1,
		Deadline:       timestamppb.New(deadline),
		Attempt:        attempt,
		IdempotencyKey: plan.req.GetIdempotencyKey(),
		TraceContext:   traceCtx,
	})
}

func respondResult(r *meshnodev1.RespondRequest) (*meshnodev1.CallResult, bool, error) {
	if e := r.GetError(); e != nil {
		return nil, true, agentErrorFrom(e)
	}
	if r.GetOk() == nil {
		return &meshnodev1.CallResult{}, true, nil
	}
	return r.GetOk(), true, nil
}

func (s *invokeService) Serve(req *meshnodev1.ServeRequest, stream meshnodev1.InvokeService_ServeServer) error {
	cred, err := PeerCredFromContext(stream.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return s.n.hub.Serve(stream.Context(), hub.Owner(cred), req, stream.Send)
}

// serveLimit is how many calls may be in flight on an agent's Serve stream:
// what the agent asked for, else its capabilities' max_concurrency.
func (n *Node) serveLimit(id string, req *meshnodev1.ServeRequest) int32 {
	limit := int32(req.GetMaxInFlight())
	if limit == 0 {
		if rec, ok := n.registry.GetAgent(id); ok {
			limit = int32(maxConcurrency(rec))
		}
	}
	return limit
}

// maxConcurrency is the lowest non-zero max_concurrency over an agent's
// capabilities (0 means unlimited).
func maxConcurrency(a *meshnodev1.Agent) uint32 {
	var m uint32
	for _, c := range a.GetCapabilities() {
		if c.GetMaxConcurrency() > 0 && (m == 0 || c.GetMaxConcurrency() < m) {
			m = c.GetMaxConcurrency()
		}
	}
	return m
}

func (s *invokeService) Respond(ctx context.Context, req *meshnodev1.RespondRequest) (*meshnodev1.RespondResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	id := s.n.hub.AgentID(req.GetAgentId())
	if err := s.n.hub.Owned(id, hub.Owner(cred)); err != nil {
		return nil, err
	}
	if err := s.n.hub.Respond(id, req); err != nil {
		return nil, err
	}
	return &meshnodev1.RespondResponse{}, nil
}
