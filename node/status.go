package node

import (
	"context"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// registerServices puts every agent API service on the socket's gRPC server.
func registerServices(n *Node) {
	meshnodev1.RegisterNodeServiceServer(n.api.Registrar(), &nodeService{n: n})
}

type nodeService struct {
	meshnodev1.UnimplementedNodeServiceServer
	n *Node
}

func (s *nodeService) Status(ctx context.Context, _ *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	n := s.n
	return &meshnodev1.StatusResponse{
		Name:          n.cfg.Name,
		Version:       Version,
		Role:          n.role(),
		StartedAt:     timestamppb.New(n.startedAt),
		UptimeSeconds: time.Since(n.startedAt).Seconds(),
		BindAddress:   n.cfg.Bind,
		DataDir:       n.cfg.DataDir,
	}, nil
}
