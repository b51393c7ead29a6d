package node_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/opsign"
	"github.com/agentmesh/meshnode/node"
	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// testNode is one in-process node with its socket.
type testNode struct {
	*node.Node
	name   string
	addr   string
	socket string
	dir    string
}

func freePort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("MESHNODE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startTestNode starts a node; join/token empty bootstraps a new cluster.
func startTestNode(t testing.TB, root, name string, server bool, join []string, token string, opts ...func(*node.Node)) *testNode {
	t.Helper()
	dir := filepath.Join(root, name)
	cfg := node.DefaultConfig()
	cfg.Name = name
	cfg.DataDir = dir
	cfg.Bind = "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg.Join = join
	cfg.Token = token
	cfg.Server = server
	cfg.ShutdownTimeout = 10 * time.Second
	n, err := node.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	tn := &testNode{Node: n, name: name, addr: cfg.Bind, socket: cfg.SocketPath(), dir: dir}
	t.Cleanup(func() { tn.stop() })
	return tn
}

func (tn *testNode) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tn.Stop(ctx)
}

func (tn *testNode) conn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("unix://"+tn.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// operatorConn is a connection to tn that signs admin methods with the
// first admin's key, which the node in dir (the bootstrapping server) wrote.
func (tn *testNode) operatorConn(t testing.TB, dir string) *grpc.ClientConn {
	t.Helper()
	sign := opsign.Interceptor(func() (ed25519.PrivateKey, string, error) {
		key, err := operator.ReadKeyFile(operator.BootstrapKeyPath(dir))
		return key, operator.FirstAdmin, err
	})
	c, err := grpc.NewClient("unix://"+tn.socket, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(sign))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (tn *testNode) token(t testing.TB, server bool, name string) string {
	t.Helper()
	role := meshnodev1.JoinRole_JOIN_ROLE_CLIENT
	if server {
		role = meshnodev1.JoinRole_JOIN_ROLE_SERVER
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Tokens are an admin's: tn is the bootstrapping server, whose data dir
	// holds the first admin's key.
	resp, err := meshnodev1.NewPKIServiceClient(tn.operatorConn(t, tn.dir)).CreateToken(ctx, &meshnodev1.CreateTokenRequest{Ttl: durationpb.New(10 * time.Minute), Role: role, NodeName: name})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	return resp.GetToken()
}

// startCluster starts n1 (bootstrap server), n2 (server) and n3 (client).
func startCluster(t testing.TB, opts ...func(name string) func(*node.Node)) []*testNode {
	t.Helper()
	opt := func(name string) []func(*node.Node) {
		var out []func(*node.Node)
		for _, o := range opts {
			out = append(out, o(name))
		}
		return out
	}
	root, err := os.MkdirTemp("", "mnc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	n1 := startTestNode(t, root, "n1", true, nil, "", opt("n1")...)
	n2 := startTestNode(t, root, "n2", true, []string{n1.addr}, n1.token(t, true, "n2"), opt("n2")...)
	n3 := startTestNode(t, root, "n3", false, []string{n1.addr}, n1.token(t, false, "n3"), opt("n3")...)
	nodes := []*testNode{n1, n2, n3}
	waitFor(t, 30*time.Second, "every node sees 3 alive members", func() bool {
		for _, n := range nodes {
			resp, err := meshnodev1.NewNodeServiceClient(n.conn(t)).Members(context.Background(), &meshnodev1.MembersRequest{})
			if err != nil {
				return false
			}
			alive := 0
			for _, m := range resp.GetMembers() {
				if m.GetStatus() == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	return nodes
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
