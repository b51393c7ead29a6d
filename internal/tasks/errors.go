package tasks

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors are gRPC statuses from the start: the API edge passes them on, and
// peers carry them between nodes unchanged.

func notFound(id string) error {
	return status.Errorf(codes.NotFound, "task %s is not known on this node: it never existed or its retention ended", id)
}

func errorf(c codes.Code, format string, args ...any) error {
	return status.Error(c, fmt.Sprintf(format, args...))
}
