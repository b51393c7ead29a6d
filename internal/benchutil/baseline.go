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

// RelayEnv, set to a socket path with BaselineEnv, makes the baseline
// server a relay: it answers each call by making the same call to the
// server on that socket (see StartRelayChain).
const RelayEnv = "MESHNODE_BENCH_RELAY_TO"

// ServeBaselineIfAsked serves the baseline and exits the process if
// BaselineEnv is set; otherwise it returns at once.
func ServeBaselineIfAsked() {
	sock := os.Getenv(BaselineEnv)
	switch {
	case sock == "":
		return
	case os.Getenv(RaftSelfEnv) != "":
		os.Exit(serveRawRaft(sock, os.Getenv(RaftSelfEnv), os.Getenv(RaftPeersEnv)))
	default:
		os.Exit(serveBaseline(sock, os.Getenv(RelayEnv)))
	}
}

type staticStatus struct {
	meshnodev1.UnimplementedNodeServiceServer
}

// Status answers with a 64-byte payload, the size the call benchmarks echo.
func (staticStatus) Status(context.Context, *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	return &meshnodev1.StatusResponse{Name: strings.Repeat("x", 64)}, nil
}

// relayStatus answers Status by asking the next server.
type relayStatus struct {
	meshnodev1.UnimplementedNodeServiceServer
	next meshnodev1.NodeServiceClient
}

func (r relayStatus) Status(ctx context.Context, req *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	return r.next.Status(ctx, req)
}

func serveBaseline(socket, relayTo string) int {
	l, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s := grpc.NewServer()
	switch {
	case os.Getenv(StreamEnv) != "":
		meshnodev1.RegisterInvokeServiceServer(s, streamBaseline{})
	case relayTo != "":
		conn, err := grpc.NewClient("unix://"+relayTo, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer conn.Close()
		meshnodev1.RegisterNodeServiceServer(s, relayStatus{next: meshnodev1.NewNodeServiceClient(conn)})
	default:
		meshnodev1.RegisterNodeServiceServer(s, staticStatus{})
	}
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
	pid = startServer(tb, sock, "")
	return dialStatus(tb, sock), pid
}

// StartRelayChain is the baseline with the call path's process topology:
// the caller calls relay 1, which calls relay 2, which calls the bare
// server, each a process of its own on a Unix socket, so a call crosses six
// process boundaries as an agent-to-agent call across two nodes does. It
// is the floor for that path's latency with nothing but grpc-go in it.
// pids are relay 1's, relay 2's and the server's.
func StartRelayChain(tb testing.TB, dir string) (call func(context.Context) error, pids []int) {
	tb.Helper()
	server, relay2, relay1 := filepath.Join(dir, "chain-server.sock"), filepath.Join(dir, "chain-relay2.sock"), filepath.Join(dir, "chain-relay1.sock")
	pids = []int{0, 0, startServer(tb, server, "")}
	pids[1] = startServer(tb, relay2, server)
	pids[0] = startServer(tb, relay1, relay2)
	return dialStatus(tb, relay1), pids
}

// startServer runs this test binary as a baseline server (or a relay to
// relayTo) on sock and waits for the socket.
func startServer(tb testing.TB, sock, relayTo string) int {
	tb.Helper()
	return startChild(tb, sock, RelayEnv+"="+relayTo)
}

// startChild runs this test binary as a baseline process serving on sock,
// with env added, and waits for the socket. It stops when tb ends.
func startChild(tb testing.TB, sock string, env ...string) int {
	tb.Helper()
	srv := exec.Command(os.Args[0], "-test.run=^$")
	srv.Env = append(append(os.Environ(), BaselineEnv+"="+sock), env...)
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
			tb.Fatalf("the baseline process did not create %s within 10 s", sock)
		}
	}
	return srv.Process.Pid
}

// dialConn connects to a baseline process's socket until tb ends.
func dialConn(tb testing.TB, sock string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

func dialStatus(tb testing.TB, sock string) func(context.Context) error {
	tb.Helper()
	base := meshnodev1.NewNodeServiceClient(dialConn(tb, sock))
	return func(ctx context.Context) error {
		_, err := base.Status(ctx, &meshnodev1.StatusRequest{})
		return err
	}
}
