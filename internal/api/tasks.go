package api

import (
	"context"

	"google.golang.org/grpc"

	"github.com/agentmesh/meshnode/internal/dataplane"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// taskService serves TaskService: Submit is routed like a call; the other
// methods go to the node the task id names.
type taskService struct {
	meshnodev1.UnimplementedTaskServiceServer
	plane *dataplane.Plane
}

func (s *taskService) Submit(ctx context.Context, req *meshnodev1.SubmitRequest) (*meshnodev1.SubmitResponse, error) {
	owner, err := callerOwner(ctx)
	if err != nil {
		return nil, err
	}
	return s.plane.Submit(ctx, owner, req)
}

func (s *taskService) GetTask(ctx context.Context, req *meshnodev1.GetTaskRequest) (*meshnodev1.GetTaskResponse, error) {
	t, err := s.plane.GetTask(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &meshnodev1.GetTaskResponse{Task: t}, nil
}

func (s *taskService) WatchTask(req *meshnodev1.WatchTaskRequest, stream grpc.ServerStreamingServer[meshnodev1.WatchTaskResponse]) error {
	return s.plane.WatchTask(stream.Context(), req, func(ev *meshnodev1.TaskEvent) error {
		return stream.Send(&meshnodev1.WatchTaskResponse{Event: ev})
	})
}

func (s *taskService) CancelTask(ctx context.Context, req *meshnodev1.CancelTaskRequest) (*meshnodev1.CancelTaskResponse, error) {
	t, err := s.plane.CancelTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return &meshnodev1.CancelTaskResponse{Task: t}, nil
}
