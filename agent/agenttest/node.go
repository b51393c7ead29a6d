// Package agenttest runs a small in-memory stand-in for a meshnode node on a
// real Unix socket, for testing agents without a cluster, the way
// net/http/httptest stands in for a web server.
//
// The Node speaks the same wire as a real node on one socket (gRPC over
// HTTP/2, Connect JSON over HTTP/1.1) and implements RegistryService,
// InvokeService (Serve and Respond, and Attach unless NoAttach), NodeService
// and QuorumService.Vote with simple, deterministic behaviour: Call goes to
// the first ready agent offering the capability, and a caller that gives up
// withdraws the call (CallCancel). It records what agents sent so tests can
// assert on it; Deliver and AskVote push hand-made calls and vote requests;
// Restart simulates a node restart (connections, streams and pending calls
// lost, registry kept).
//
// Agents, Serve and Attach streams, pending calls and vote requests are
// handled by the real node's agent hub (internal/hub), so agents meet the
// node's own serve loop. It does not check peer credentials, route across
// nodes, retry, run quorum tallies, or enforce MaxInFlight; the real node's
// tests cover those.
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/internal/socketapi"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

var errStopping = status.Error(codes.Unavailable, "node stopping")

// maxMessage is the largest message the Node reads or writes, stated to
// agents in ServeReady as a real node states its own.
const maxMessage = 16 << 20

// Node is an in-memory meshnode node serving on a Unix socket.
type Node struct {
	// Socket is the socket path agents connect to.
	Socket string
	// Name is what Status reports and what agent ids are prefixed with.
	Name string
	// NoAttach makes InvokeService.Attach answer Unimplemented, like a node
	// from before it existed, so agents fall back to Serve and unary
	// answers. Set it before Start (or Restart).
	NoAttach bool

	mu      sync.Mutex
	st      *state
	srv     *socketapi.Server
	started chan struct{} // closed and replaced by Start, for WaitReady
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
	var err error
	if n.st == nil {
		n.st, err = newState(n.Name)
	} else {
		n.st, err = n.st.reincarnate()
	}
	if err != nil {
		return err
	}
	st := n.st
	// A stopping node answers nothing: without this, a fast reconnect could
	// register with the incarnation being torn down.
	srv, err := socketapi.New(socketapi.Config{
		Path:       n.Socket,
		MaxMessage: maxMessage,
		Unary: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if st.stopped() {
				return nil, errStopping
			}
			return h(ctx, req)
		}},
		Stream: []grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if st.stopped() {
				return errStopping
			}
			return h(srv, ss)
		}},
	})
	if err != nil {
		return err
	}
	r := srv.Registrar()
	meshnodev1.RegisterRegistryServiceServer(r, &registrySvc{st: n.st})
	meshnodev1.RegisterInvokeServiceServer(r, &invokeSvc{st: n.st, noAttach: n.NoAttach})
	meshnodev1.RegisterNodeServiceServer(r, &nodeSvc{st: n.st})
	meshnodev1.RegisterQuorumServiceServer(r, &quorumSvc{st: n.st})
	if err := srv.Start(context.Background()); err != nil {
		return fmt.Errorf("listen on %s: %w", n.Socket, err)
	}
	n.srv = srv
	if n.started != nil {
		close(n.started)
	}
	n.started = make(chan struct{})
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
	n.srv.Close()
	n.srv = nil
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

// AskVote pushes a vote request to a ready agent and waits for its signed
// vote. An empty RequestId is filled in.
func (n *Node) AskVote(ctx context.Context, agentID string, ask *meshnodev1.VoteAsk) (*meshnodev1.VoteRequest, error) {
	return n.state().askVote(ctx, agentID, ask)
}

// Votes returns every VoteRequest received, oldest first.
func (n *Node) Votes() []*meshnodev1.VoteRequest {
	st := n.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]*meshnodev1.VoteRequest(nil), st.votes...)
}

// StrayAnswers counts Respond calls for calls nobody was waiting for
// (answered twice, withdrawn, or timed out).
func (n *Node) StrayAnswers() int {
	st := n.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.strayAnswers
}

// Answers counts the answers (call responses and votes) the node took:
// unary ones (Respond, Vote) and ones sent on an Attach stream.
func (n *Node) Answers() (unary, onStream int) {
	st := n.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.answered[0], st.answered[1]
}
