package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
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
	cfg.Resolver = n
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

// Resolve gives the router a capability's candidates and policy (used for
// the call's own capability and for a policy's fallback capability).
func (n *Node) Resolve(ctx context.Context, capability string) ([]routing.Candidate, routing.Policy, error) {
	pol, err := n.policyFor(ctx, capability)
	if err != nil {
		return nil, pol, err
	}
	agents, err := n.agentsFor(ctx, capability)
	if err != nil {
		return nil, pol, err
	}
	if len(agents) == 0 {
		// The local replica may lag a registration made a moment ago on
		// another node; ask the leader before answering NotFound.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		if fresh, _, err := n.store.Agents(cctx, consensus.ReadOptions{Consistency: consensus.Consistent}, consensus.AgentFilter{Capability: capability}); err == nil {
			agents = fresh
		}
		cancel()
	}
	cands := make([]routing.Candidate, 0, len(agents))
	for _, a := range agents {
		if c := n.candidate(a, capability); c != nil {
			cands = append(cands, *c)
		}
	}
	return cands, pol, nil
}

// agentsFor returns the agents registered for a capability, from the local
// replica.
func (n *Node) agentsFor(ctx context.Context, capability string) ([]*meshnodev1.Agent, error) {
	// The index is read before the registry: a write landing in between
	// only makes the cached answer newer than its key, never older.
	index := n.store.Index()
	if agents, ok := n.registered.get(capability, index); ok {
		return agents, nil
	}
	agents, _, err := n.store.Agents(ctx, consensus.ReadOptions{}, consensus.AgentFilter{Capability: capability})
	if err != nil {
		return nil, storeError("find agents for "+capability, err)
	}
	if len(agents) > 0 { // an empty answer is confirmed with the leader each time
		n.registered.put(capability, index, agents)
	}
	return agents, nil
}

// candidate merges an agent's registry record with what gossip and this
// node know about it right now.
func (n *Node) candidate(a *meshnodev1.Agent, capability string) *routing.Candidate {
	capEntry := findCapability(a, capability)
	if capEntry == nil {
		return nil
	}
	c := &routing.Candidate{
		AgentID: a.GetId(),
		Node:    a.GetNode(),
		Capability: routing.CandidateCapability{
			Name:           capEntry.GetName(),
			Attributes:     capEntry.GetAttributes(),
			Proficiency:    routing.Proficiency(capEntry.GetProficiency()),
			Cost:           capEntry.GetCost(),
			MaxConcurrency: int(capEntry.GetMaxConcurrency()),
		},
	}
	if a.GetNode() == n.cfg.Name {
		// Our own agents: the local table is the truth, no gossip needed.
		c.NodeAlive = true
		c.Ready = n.hub.Serving(a.GetId())
		return c
	}
	r := n.remoteStatus(a)
	c.NodeAlive, c.Ready = r.alive, r.ready
	if l := r.load; r.reported {
		c.Draining = l.Status == gossip.StatusDraining
		c.Load = routing.GossipLoad{InFlight: int(l.InFlight), Capacity: int(l.Capacity), EWMALatency: l.EWMALatency,
			SuccessRate: l.SuccessRate, HasSuccessRate: l.SuccessRate > 0}
	}
	return c
}

// remoteAgent is what this node knows of an agent on another node.
type remoteAgent struct {
	alive    bool // its node is alive in gossip
	reported bool // its node has published a signed load entry for it
	load     gossip.AgentLoad
	ready    bool
}

// remoteStatus merges gossip with the registry for an agent on another
// node: the signed load report when there is one; otherwise the committed
// status, which is all there is before its node's first report (a fresh
// registration, or a report that arrived before the node's key reached our
// replica). Routing, Discover and voter selection all read it.
func (n *Node) remoteStatus(a *meshnodev1.Agent) remoteAgent {
	r := remoteAgent{alive: n.gossip.NodeAlive(a.GetNode())}
	r.load, r.reported = n.gossip.LoadOf(a.GetId(), a.GetNode())
	if r.reported {
		r.ready = r.load.Status == gossip.StatusReady
	} else {
		r.ready = a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_READY
	}
	return r
}

// policyFor returns the routing policy in force for a capability: its own,
// else the cluster default "*", else the built-in defaults. It runs on every
// call, on both nodes, so the answer is cached per registry index.
func (n *Node) policyFor(ctx context.Context, capability string) (routing.Policy, error) {
	index := n.store.Index() // before the read, as in agentsFor
	if pol, ok := n.policies.get(capability, index); ok {
		return pol, nil
	}
	pol, err := n.readPolicy(ctx, capability)
	if err == nil {
		n.policies.put(capability, index, pol)
	}
	return pol, err
}

func (n *Node) readPolicy(ctx context.Context, capability string) (routing.Policy, error) {
	for _, key := range []string{capability, "*"} {
		rec, _, err := n.store.Policy(ctx, consensus.ReadOptions{}, key)
		if errors.Is(err, consensus.ErrNotFound) {
			continue
		}
		if err != nil {
			return routing.DefaultPolicy(), storeError("read policy", err)
		}
		p := &meshnodev1.RoutingPolicy{}
		if err := proto.Unmarshal(rec.GetPolicy(), p); err != nil {
			return routing.DefaultPolicy(), status.Errorf(codes.Internal, "stored policy %q is corrupt: %v", key, err)
		}
		pol, err := routing.PolicyFromProto(p)
		if err != nil {
			return routing.DefaultPolicy(), status.Errorf(codes.Internal, "stored policy %q is invalid: %v", key, err)
		}
		return pol, nil
	}
	return routing.DefaultPolicy(), nil
}

// route picks agents for a planned call and runs its attempts.
func (n *Node) route(ctx context.Context, plan *callPlan) (*meshnodev1.CallResponse, error) {
	capability := plan.req.GetCapability()
	overrides, err := routing.OverridesFromProto(plan.req.GetRouting())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	cands, pol, err := n.Resolve(ctx, capability)
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
	n.recordCall(time.Since(start), err == nil)
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
