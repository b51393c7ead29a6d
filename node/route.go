package node

import (
	"context"
	"errors"
	"sync"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tracer is the node's tracer (a no-op one when tracing is off).
func (n *Node) tracer() trace.Tracer {
	if n.tracing == nil {
		return noop.NewTracerProvider().Tracer("meshnode")
	}
	return n.tracing.Tracer("meshnode/node")
}

func (n *Node) startRouting(context.Context) error {
	cfg := routing.DefaultConfig()
	cfg.LocalNode = n.cfg.Name
	cfg.Resolver = n.catalog
	cfg.Logger = n.log.With("component", "routing")
	if n.tracing != nil {
		cfg.Tracer = n.tracing.Tracer("meshnode/routing")
	}
	r, err := routing.NewRouter(cfg)
	if err != nil {
		return err
	}
	n.router = r
	return nil
}

// route picks agents for a planned call and runs its attempts.
func (n *Node) route(ctx context.Context, plan *callPlan) (*meshnodev1.CallResponse, error) {
	capability := plan.req.GetCapability()
	overrides, err := routing.OverridesFromProto(plan.req.GetRouting())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	cands, pol, err := n.catalog.Resolve(ctx, capability)
	if err != nil {
		return nil, err
	}
	req := routing.Request{
		Capability:  capability,
		Constraints: overrides.Constraints,
		Overrides:   overrides,
		Meta: routing.Metadata{
			Chain:          plan.chain,
			Hops:           int(plan.hops),
			Deadline:       plan.deadline,
			IdempotencyKey: plan.req.GetIdempotencyKey(),
		},
		Policy: pol,
	}
	var mu sync.Mutex
	var answer *meshnodev1.CallResult
	inv := routing.InvokerFunc(func(ctx context.Context, a routing.Attempt) (bool, error) {
		agent := &meshnodev1.Agent{Id: a.Candidate.AgentID, Node: a.Candidate.Node}
		res, started, err := n.invokeAgent(ctx, plan, agent, uint32(a.Number), a.Deadline, a.Meta.TraceContext)
		if err != nil {
			var ae *agentError
			if errors.As(err, &ae) && ae.retryable {
				return started, routing.MarkRetryable(err)
			}
			return started, err
		}
		mu.Lock()
		answer = res
		mu.Unlock()
		return started, nil
	})
	// A call made by a handler continues the handler's trace.
	ctx = routing.ExtractTraceContext(ctx, plan.req.GetMetadata())
	start := time.Now()
	res, err := n.router.Route(ctx, req, cands, inv)
	n.catalog.ObserveCall(time.Since(start), err == nil)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	return &meshnodev1.CallResponse{
		Payload:     answer.GetPayload(),
		ContentType: answer.GetContentType(),
		Metadata:    answer.GetMetadata(),
		AgentId:     res.Agent.AgentID,
		Node:        res.Agent.Node,
		Attempts:    uint32(res.Attempts),
		TraceId:     res.TraceID,
	}, nil
}
