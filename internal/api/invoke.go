package api

import (
	"context"

	"google.golang.org/grpc"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// invokeService serves InvokeService: calls go to the data plane, an
// agent's streams and answers to the hub, each under the calling process's
// identity.
type invokeService struct {
	meshnodev1.UnimplementedInvokeServiceServer
	hub   *hub.Hub
	plane *dataplane.Plane
}

func (s *invokeService) Call(ctx context.Context, req *meshnodev1.CallRequest) (*meshnodev1.CallResponse, error) {
	owner, err := callerOwner(ctx)
	if err != nil {
		return nil, err
	}
	return s.plane.Call(ctx, owner, req)
}

// CallStream is Call with the answer streamed back chunk by chunk.
func (s *invokeService) CallStream(req *meshnodev1.CallRequest, stream grpc.ServerStreamingServer[meshnodev1.CallStreamResponse]) error {
	owner, err := callerOwner(stream.Context())
	if err != nil {
		return err
	}
	return s.plane.CallStream(stream.Context(), owner, req, stream.Send)
}

// StreamRespond carries one streaming answer from an agent.
func (s *invokeService) StreamRespond(stream grpc.ClientStreamingServer[meshnodev1.StreamRespondRequest, meshnodev1.StreamRespondResponse]) error {
	owner, err := callerOwner(stream.Context())
	if err != nil {
		return err
	}
	return s.hub.ServeChunks(owner, stream)
}

// SendChunk is one frame of a streaming answer, for HTTP/1.1 agents.
func (s *invokeService) SendChunk(ctx context.Context, req *meshnodev1.StreamRespondRequest) (*meshnodev1.StreamRespondResponse, error) {
	owner, err := callerOwner(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.hub.SendChunk(ctx, owner, req); err != nil {
		return nil, err
	}
	return &meshnodev1.StreamRespondResponse{}, nil
}

func (s *invokeService) Serve(req *meshnodev1.ServeRequest, stream meshnodev1.InvokeService_ServeServer) error {
	owner, err := callerOwner(stream.Context())
	if err != nil {
		return err
	}
	return s.hub.Serve(stream.Context(), owner, req, stream.Send)
}

// Attach is Serve with the answers (responses and votes) coming back on the
// same stream.
func (s *invokeService) Attach(stream grpc.BidiStreamingServer[meshnodev1.AttachRequest, meshnodev1.ServeResponse]) error {
	owner, err := callerOwner(stream.Context())
	if err != nil {
		return err
	}
	return s.hub.Attach(owner, stream)
}

func (s *invokeService) Respond(ctx context.Context, req *meshnodev1.RespondRequest) (*meshnodev1.RespondResponse, error) {
	owner, err := callerOwner(ctx)
	if err != nil {
		return nil, err
	}
	id := s.hub.AgentID(req.GetAgentId())
	if err := s.hub.Owned(id, owner); err != nil {
		return nil, err
	}
	if err := s.hub.Respond(id, req); err != nil {
		return nil, err
	}
	return &meshnodev1.RespondResponse{}, nil
}

// ServeLimit is how many calls may be in flight on agent id's Serve
// stream: what the agent asked for, else the lowest non-zero
// max_concurrency of its registered capabilities (0: unlimited). It is the
// hub's Limit hook.
func ServeLimit(st *consensus.Store, id string, req *meshnodev1.ServeRequest) int32 {
	if limit := int32(req.GetMaxInFlight()); limit != 0 {
		return limit
	}
	rec, _, err := st.Agent(context.Background(), consensus.ReadOptions{}, id)
	if err != nil {
		return 0
	}
	var m uint32
	for _, c := range rec.GetCapabilities() {
		if c.GetMaxConcurrency() > 0 && (m == 0 || c.GetMaxConcurrency() < m) {
			m = c.GetMaxConcurrency()
		}
	}
	return int32(m)
}
