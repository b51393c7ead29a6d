package node

import (
	"context"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type invokeService struct {
	meshnodev1.UnimplementedInvokeServiceServer
	n *Node
}

func (s *invokeService) Call(ctx context.Context, req *meshnodev1.CallRequest) (*meshnodev1.CallResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return s.n.plane.Load().Call(ctx, hub.Owner(cred), req)
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
