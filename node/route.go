package node

import (
	"context"
	"errors"

	"github.com/agentmesh/meshnode/internal/authzgate"
	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"github.com/agentmesh/meshnode/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// startRouting builds the router and the data plane around it.
func (n *Node) startRouting(context.Context) error {
	cfg := routing.DefaultConfig()
	cfg.LocalNode = n.cfg.Name
	cfg.Resolver = n.catalog
	cfg.Clock = n.clock
	cfg.Logger = n.log.With("component", "routing")
	if n.cfg.CallMetrics {
		cfg.Observer = n.metrics.Calls()
	}
	n.authz = authzgate.New(n.store)
	pcfg := dataplane.Config{LocalNode: n.cfg.Name, MaxPayload: n.cfg.MaxPayload, CallTimeout: n.cfg.CallTimeout,
		TaskTimeout: n.cfg.TaskTimeout, Tasks: n.tasks, Authz: n.authz,
		ClusterID: n.clusterID(), Local: n.hub, Catalog: n.catalog, Peers: peerRPC{n.ep}, Clock: n.clock, Logger: n.log.With("component", "dataplane")}
	if n.cfg.CallMetrics {
		pcfg.Observer = dataplane.Observers{n.metrics.Calls(), n.traffic}
	}
	if n.tracing != nil {
		cfg.Tracer = n.tracing.Tracer("meshnode/routing")
		pcfg.Tracer = n.tracing.Tracer("meshnode/node")
	}
	r, err := routing.NewRouter(cfg)
	if err != nil {
		return err
	}
	n.router, pcfg.Router = r, r
	if n.cfg.CallMetrics {
		n.metrics.RetryBudgets(r.RetryBudgets)
	}
	plane, err := dataplane.New(pcfg)
	if err != nil {
		return err
	}
	n.plane.Store(plane)
	n.registerLateGauges()
	return nil
}

// peerRPC sends the data plane's requests over the node's QUIC endpoint.
type peerRPC struct{ ep *transport.Endpoint }

func (p peerRPC) Invoke(ctx context.Context, addr, method string, req, resp proto.Message) error {
	return transport.Invoke(ctx, p.ep, addr, method, req, resp)
}

func (p peerRPC) OpenStream(ctx context.Context, addr, method string) (dataplane.PeerStream, error) {
	return p.ep.OpenStream(ctx, addr, method)
}

// errPlaneNotReady: a peer reached the data plane before routing started.
var errPlaneNotReady = errors.New("the data plane is not running yet")

// handlePeer adapts a data plane method to a peer RPC handler: only a node
// may call it, and it is named to the data plane by its authenticated
// certificate identity.
func handlePeer[Req, Resp proto.Message](n *Node, method string, newReq func() Req, h func(*dataplane.Plane, context.Context, string, Req) (Resp, error)) {
	transport.HandleProto(n.ep, method, newReq, func(ctx context.Context, p transport.Peer, req Req) (Resp, error) {
		var zero Resp
		if p.ID.Kind != pki.KindNode {
			return zero, status.Errorf(codes.PermissionDenied, "peer %s is not a node", p.ID)
		}
		plane := n.plane.Load()
		if plane == nil {
			return zero, status.Error(codes.Unavailable, errPlaneNotReady.Error())
		}
		return h(plane, ctx, p.ID.Node, req)
	})
}

// handlePeerStream is handlePeer for a streaming peer RPC.
func handlePeerStream(n *Node, method string, h func(*dataplane.Plane, context.Context, string, dataplane.PeerStream) error) {
	n.ep.HandleStream(method, func(ctx context.Context, p transport.Peer, st *transport.Stream) error {
		if p.ID.Kind != pki.KindNode {
			return status.Errorf(codes.PermissionDenied, "peer %s is not a node", p.ID)
		}
		plane := n.plane.Load()
		if plane == nil {
			return status.Error(codes.Unavailable, errPlaneNotReady.Error())
		}
		return h(plane, ctx, p.ID.Node, st)
	})
}

func (n *Node) registerDataPlaneHandlers() {
	handlePeer(n, dataplane.MethodForwardCall, func() *meshnodev1.ForwardCallRequest { return &meshnodev1.ForwardCallRequest{} }, (*dataplane.Plane).Receive)
	handlePeerStream(n, dataplane.MethodForwardStream, (*dataplane.Plane).ReceiveStream)
	n.registerTaskHandlers()
	handlePeer(n, dataplane.MethodForwardVote, func() *meshnodev1.ForwardVoteRequest { return &meshnodev1.ForwardVoteRequest{} }, (*dataplane.Plane).ReceiveVote)
}
