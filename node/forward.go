package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/internal/hub"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"github.com/agentmesh/meshnode/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Peer RPC methods the node serves on the transport.
const (
	methodForwardCall = "invoke.Forward"
	methodForwardVote = "quorum.Vote"
)

// errNodeDied is the cancellation cause of calls to a node gossip declared dead.
var errNodeDied = errors.New("node declared dead")

// inflightCalls tracks forwarded calls per target node so they can be
// cancelled when that node dies.
type inflightCalls struct {
	mu   sync.Mutex
	next uint64
	m    map[string]map[uint64]context.CancelCauseFunc
}

// track registers cancel under node and returns the function that forgets it.
func (f *inflightCalls) track(node string, cancel context.CancelCauseFunc) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]map[uint64]context.CancelCauseFunc{}
	}
	if f.m[node] == nil {
		f.m[node] = map[uint64]context.CancelCauseFunc{}
	}
	f.next++
	id := f.next
	f.m[node][id] = cancel
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.m[node], id)
		if len(f.m[node]) == 0 {
			delete(f.m, node)
		}
	}
}

// cancelNode cancels every call in flight to node.
func (f *inflightCalls) cancelNode(node string) int {
	f.mu.Lock()
	calls := f.m[node]
	delete(f.m, node)
	f.mu.Unlock()
	for _, cancel := range calls {
		cancel(errNodeDied)
	}
	return len(calls)
}

// DefaultMaxHops bounds agent-to-agent chains when the policy names none.
const DefaultMaxHops = 8

// maxHopLimit is the hard cap checked before any policy is read; policies
// may lower the limit below it.
const maxHopLimit = 64

// forwardCall sends one attempt to the node of a remote agent.
func (n *Node) forwardCall(ctx context.Context, agent *meshnodev1.Agent, d *meshnodev1.Delivery, meta *meshnodev1.RoutingMetadata) (*meshnodev1.CallResult, bool, error) {
	addr, ok := n.catalog.NodeAddress(agent.GetNode())
	if !ok {
		return nil, false, status.Errorf(codes.Unavailable, "node %s of agent %s has no known address", agent.GetNode(), agent.GetId())
	}
	// A call in flight on a node that gossip then declares dead would
	// otherwise wait out the caller's whole deadline: cancel it at once so
	// the router can fail over (or fail fast).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer n.inflight.track(agent.GetNode(), cancel)()
	var resp meshnodev1.ForwardCallResponse
	err := transport.Invoke(ctx, n.ep, addr, methodForwardCall, &meshnodev1.ForwardCallRequest{TargetAgentId: agent.GetId(), Delivery: d, Routing: meta}, &resp)
	if err != nil {
		// The remote node reports "never delivered" as Unavailable or
		// ResourceExhausted; anything else may have reached the agent.
		c := status.Code(err)
		started := c != codes.Unavailable && c != codes.ResourceExhausted
		if errors.Is(context.Cause(ctx), errNodeDied) {
			return nil, true, status.Errorf(codes.Unavailable, "node %s of agent %s was declared dead while the call was in flight", agent.GetNode(), agent.GetId())
		}
		if ctx.Err() != nil {
			return nil, true, ctxStatus(ctx, "calling "+agent.GetId())
		}
		return nil, started, err
	}
	if e := resp.GetError(); e != nil {
		return nil, true, agentErrorFrom(e)
	}
	if resp.GetOk() == nil {
		return &meshnodev1.CallResult{}, true, nil
	}
	return resp.GetOk(), true, nil
}

// handleForwardCall is the receiving side: a peer node asks us to deliver a
// call to one of our agents. The peer is authenticated by mTLS; we check
// that it is a node and that the call's metadata is sane before delivering.
func (n *Node) handleForwardCall(ctx context.Context, p transport.Peer, req *meshnodev1.ForwardCallRequest) (*meshnodev1.ForwardCallResponse, error) {
	if p.ID.Kind != pki.KindNode {
		return nil, status.Errorf(codes.PermissionDenied, "peer %s is not a node", p.ID)
	}
	target := req.GetTargetAgentId()
	if !strings.HasPrefix(target, n.cfg.Name+"/") {
		return nil, status.Errorf(codes.NotFound, "agent %s is not attached to node %s", target, n.cfg.Name)
	}
	meta := req.GetRouting()
	if err := checkHop(meta, target, maxHopLimit, time.Now()); err != nil {
		return nil, err
	}
	// Then the capability's own policy: its hop limit and minimum time left.
	m, err := routing.MetadataFromProto(meta)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if pol, err := n.catalog.PolicyFor(ctx, req.GetDelivery().GetCapability()); err == nil {
		if err := routing.CheckInbound(time.Now(), m, pol); err != nil {
			return nil, err
		}
	}
	d := req.GetDelivery()
	if d == nil {
		return nil, status.Error(codes.InvalidArgument, "forwarded call has no delivery")
	}
	if len(d.GetPayload()) > n.cfg.MaxPayload {
		return nil, status.Errorf(codes.InvalidArgument, "payload is %d bytes, over node %s's limit of %d", len(d.GetPayload()), n.cfg.Name, n.cfg.MaxPayload)
	}
	deadline := meta.GetDeadline().AsTime()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ctx, span := routing.StartInbound(ctx, n.tracer(), d.GetCapability(), meta.GetTraceContext())
	defer span.End()
	// The handler's span is a child of this node's: hand it our context.
	d.Metadata = mergeTrace(d.GetMetadata(), routing.InjectTraceContext(ctx))
	chain := meta.GetChain()
	start := time.Now()
	r, err := n.hub.Deliver(ctx, target, d, hub.CallContext{Chain: chain[:len(chain)-1], Hops: meta.GetHops(), Deadline: deadline})
	n.catalog.Observe(target, time.Since(start), err == nil && r.GetError() == nil)
	if err != nil {
		return nil, err
	}
	if e := r.GetError(); e != nil {
		return &meshnodev1.ForwardCallResponse{Result: &meshnodev1.ForwardCallResponse_Error{Error: e}}, nil
	}
	ok := r.GetOk()
	if ok == nil {
		ok = &meshnodev1.CallResult{}
	}
	return &meshnodev1.ForwardCallResponse{Result: &meshnodev1.ForwardCallResponse_Ok{Ok: ok}}, nil
}

// checkHop validates routing metadata arriving from a peer: the chain must
// end with the target, must not visit the target twice (a cycle), must stay
// within the hop limit, and the deadline must not have passed.
func checkHop(meta *meshnodev1.RoutingMetadata, target string, maxHops int, now time.Time) error {
	chain := meta.GetChain()
	if len(chain) == 0 || chain[len(chain)-1] != target {
		return status.Errorf(codes.InvalidArgument, "routing metadata: chain must end with the target agent %s", target)
	}
	if i := slices.Index(chain[:len(chain)-1], target); i >= 0 {
		return status.Errorf(codes.FailedPrecondition, "call cycle: %s", strings.Join(chain[i:], " -> "))
	}
	if int(meta.GetHops()) > maxHops {
		return status.Errorf(codes.FailedPrecondition, "call exceeds the hop limit of %d: %s", maxHops, strings.Join(chain, " -> "))
	}
	if meta.GetDeadline() == nil {
		return status.Error(codes.InvalidArgument, "routing metadata: no deadline")
	}
	if !meta.GetDeadline().AsTime().After(now) {
		return status.Errorf(codes.DeadlineExceeded, "deadline passed before the call reached %s", target)
	}
	return nil
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
