package benchutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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

// StartBaseline runs this test binary as the bare server (the binary's
// TestMain must call ServeBaselineIfAsked) on a socket in dir, and returns
// a unary call to it and the server's pid. Both stop with tb.
func StartBaseline(tb testing.TB, dir string) (call func(context.Context) error, pid int) {
	tb.Helper()
	sock := filepath.Join(dir, "base.sock")
	srv := exec.Command(os.Args[0], "-test.run=^$")
	srv.Env = append(os.Environ(), BaselineEnv+"="+sock)
	stdin, err := srv.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); srv.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the baseline server did not create %s within 10 s", sock)
		}
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	base := meshnodev1.NewNodeServiceClient(conn)
	return func(ctx context.Context) error {
		_, err := base.Status(ctx, &meshnodev1.StatusRequest{})
		return err
	}, srv.Process.Pid
}
