package benchutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// BaselineEnv, set to a socket path, makes a test binary that calls
// ServeBaselineIfAsked from TestMain serve a bare grpc-go NodeService there:
// the call-path baseline is a direct unary call between two processes.
const BaselineEnv = "MESHNODE_BENCH_BASELINE_SOCKET"

// ServeBaselineIfAsked serves the baseline and exits the process if
// BaselineEnv is set; otherwise it returns at once.
func ServeBaselineIfAsked() {
	if sock := os.Getenv(BaselineEnv); sock != "" {
		os.Exit(serveBaseline(sock))
	}
}

type staticStatus struct {
	meshnodev1.UnimplementedNodeServiceServer
}

// Status answers with a 64-byte payload, the size the call benchmarks echo.
func (staticStatus) Status(context.Context, *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	return &meshnodev1.StatusResponse{Name: strings.Repeat("x", 64)}, nil
}

func serveBaseline(socket string) int {
	l, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s := grpc.NewServer()
	meshnodev1.RegisterNodeServiceServer(s, staticStatus{})
	go s.Serve(l)
	// Stop when the parent goes away (stdin closes).
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	s.Stop()
	return 0
}
