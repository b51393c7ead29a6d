// Package agenttest runs a small in-memory stand-in for a meshnode node on a
// real Unix socket, for testing agents without a cluster: the way
// net/http/httptest stands in for a web server.
//
// The Node speaks the same wire as a real node on one socket (gRPC over
// HTTP/2, Connect JSON over HTTP/1.1) and implements RegistryService,
// InvokeService and NodeService with simple, deterministic behaviour: Call
// goes to the first ready agent offering the capability, on this node only.
// It records what agents sent so tests can assert on it, and Restart
// simulates a node restart (socket gone, state forgotten, socket back).
//
// It does not check peer credentials, route across nodes, retry, or enforce
// MaxInFlight; the real node's tests cover those.
package agenttest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Node is an in-memory meshnode node serving on a Unix socket.
type Node struct {
	// Socket is the socket path agents connect to.
	Socket string
	// Name is what Status reports and what agent ids are prefixed with.
	Name string

	mu       sync.Mutex
	st       *state
	srv      *grpc.Server
	mux      *connMux
	serveErr chan error
	started  chan struct{} // closed and replaced by Start, for WaitReady
}

// NewNode starts a Node on a fresh socket in a temporary directory and stops
// it when the test ends.
func NewNode(t testing.TB) *Node {
	t.Helper()
	// Unix socket paths are limited to ~108 bytes and t.TempDir() can be
	// long, so use a short directory of our own.
	dir, err := os.MkdirTemp("", "mn")
	if err != nil {
		t.Fatalf("agenttest: temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &Node{Socket: filepath.Join(dir, "node.sock"), Name: "test-node"}
	if err := n.Start(); err != nil {
		t.Fatalf("agenttest: %v", err)
	}
	t.Cleanup(n.Stop)
	return n
}

// Start serves on n.Socket. NewNode calls it; after Stop it brings the node
// back with its registry but without streams or pending calls.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return errors.New("agenttest: node already running")
	}
	if n.st == nil {
		n.st = newState(n.Name)
	} else {
		n.st = n.st.reincarnate()
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	meshnodev1.RegisterRegistryServiceServer(srv, &registrySvc{st: n.st})
	meshnodev1.RegisterInvokeServiceServer(srv, &invokeSvc{st: n.st})
	meshnodev1.RegisterNodeServiceServer(srv, &nodeSvc{st: n.st})
	mux, err := listenMux(n.Socket, srv)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.Socket, err)
	}
	n.srv, n.mux = srv, mux
	if n.started != nil {
		close(n.started)
	}
	n.started = make(chan struct{})
	n.serveErr = make(chan error, 1)
	go func() { n.serveErr <- srv.Serve(mux.grpcListener()) }()
	return nil
}

// Stop closes every connection and stream at once, like a crashing node,
// and removes the socket. It is safe to call twice.
func (n *Node) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.st.close()
	n.mux.close()
	n.srv.Stop()
	<-n.serveErr
	n.srv, n.mux = nil, nil
	os.Remove(n.Socket)
}

// Restart stops the node and starts it again on the same socket. Like a real
// node it keeps the registry (Raft state) and loses every connection, Serve
// stream and pending call, so agents must reconnect and serve again.
func (n *Node) Restart() error {
	n.Stop()
	return n.Start()
}

func (n *Node) state() *state {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st
}

func (n *Node) startedCh() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started
}

// Registrations returns every RegisterRequest received, oldest first.
func (n *Node) Registrations() []*meshnodev1.RegisterRequest {
	st := n.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]*meshnodev1.RegisterRequest(nil), st.registrations...)
}

// Calls returns every CallRequest received, oldest first.
func (n *Node) Calls() []*meshnodev1.CallRequest {
	st := n.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]*meshnodev1.CallRequest(nil), st.calls...)
}

// ServeRequests returns every ServeRequest received, oldest first.
func (n *Node) ServeRequests() []*meshnodev1.ServeRequest {
	st := n.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]*meshnodev1.ServeRequest(nil), st.serveRequests...)
}

// WaitReady blocks until the agent with the given id (or bare name) has an
// open, confirmed Serve stream, or ctx ends.
func (n *Node) WaitReady(ctx context.Context, agentID string) error {
	for {
		started := n.startedCh()
		ok, changed := n.state().isReady(agentID)
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-started:
		case <-ctx.Done():
			return fmt.Errorf("agenttest: waiting for agent %q to serve: %w", agentID, ctx.Err())
		}
	}
}

// Deliver pushes a hand-made delivery to a ready agent and waits for its
// answer, for tests that need control over deadlines, attempts or chains.
// An empty CallId is filled in.
func (n *Node) Deliver(ctx context.Context, agentID string, d *meshnodev1.Delivery) (*meshnodev1.RespondRequest, error) {
	return n.state().deliver(ctx, agentID, d)
}

// Agent returns the registered agent with the given id or bare name.
func (n *Node) Agent(id string) (*meshnodev1.Agent, bool) {
	st := n.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.agents[st.resolve(id)]
	return a, ok
}
