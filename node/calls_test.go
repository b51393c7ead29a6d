package node_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// serveAgent runs an SDK agent on tn until the test ends; returns a stop func.
func serveAgent(t *testing.T, tn *testNode, name string, caps map[string]agent.HandlerFunc) (*agent.Agent, func()) {
	t.Helper()
	a := &agent.Agent{Name: name, Socket: tn.socket}
	for c, h := range caps {
		a.Handle(agent.Capability{Name: c}, h)
	}
	return a, runAgent(t, a)
}

// runAgent serves a until the returned stop is called or tb ends.
func runAgent(tb testing.TB, a *agent.Agent) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Serve(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			a.Close()
		})
	}
	tb.Cleanup(stop)
	return stop
}

func readyAgents(t testing.TB, tn *testNode, capability string) map[string]bool {
	conn, err := grpc.NewClient("unix://"+tn.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil
	}
	defer conn.Close()
	resp, err := meshnodev1.NewRegistryServiceClient(conn).Discover(context.Background(), &meshnodev1.DiscoverRequest{Capability: capability})
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, d := range resp.GetAgents() {
		if d.GetLoad().GetStatus() == "ready" {
			out[d.GetAgent().GetId()] = true
		}
	}
	return out
}

func echoFrom(node string) agent.HandlerFunc {
	return func(ctx context.Context, req *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: []byte(node + ":" + string(req.Payload))}, nil
	}
}

// TestCallsCrossTheCluster: agents on three nodes; a call from every node
// reaches an agent on every other node over QUIC.
func TestCallsCrossTheCluster(t *testing.T) {
	nodes := startCluster(t)
	for _, n := range nodes {
		serveAgent(t, n, "echo", map[string]agent.HandlerFunc{"echo": echoFrom(n.name)})
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, n.name+" sees 3 ready echo agents", func() bool { return len(readyAgents(t, n, "echo")) == 3 })
	}
	for _, from := range nodes {
		inv := meshnodev1.NewInvokeServiceClient(from.conn(t))
		for _, to := range nodes {
			target := to.name + "/echo"
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: "echo", Payload: []byte("hi"),
				Routing: &meshnodev1.RoutingOverrides{PreferredAgentIds: []string{target}}})
			cancel()
			if err != nil {
				t.Fatalf("call from %s to %s: %v", from.name, target, err)
			}
			if got, want := string(resp.GetPayload()), to.name+":hi"; got != want || resp.GetAgentId() != target {
				t.Fatalf("call from %s preferring %s answered by %s with %q, want %q", from.name, target, resp.GetAgentId(), got, want)
			}
		}
	}
}

// TestRemoteHandlerSeesDeadline: the caller's deadline cancels the handler
// on another node.
func TestRemoteHandlerSeesDeadline(t *testing.T) {
	nodes := startCluster(t)
	cancelled := make(chan error, 1)
	serveAgent(t, nodes[2], "slow", map[string]agent.HandlerFunc{"slow": func(ctx context.Context, _ *agent.Request) (*agent.Response, error) {
		<-ctx.Done()
		cancelled <- ctx.Err()
		return nil, ctx.Err()
	}})
	waitFor(t, 20*time.Second, "n1 sees the slow agent ready", func() bool { return len(readyAgents(t, nodes[0], "slow")) == 1 })
	start := time.Now()
	_, err := meshnodev1.NewInvokeServiceClient(nodes[0].conn(t)).Call(context.Background(), &meshnodev1.CallRequest{
		Capability: "slow", Deadline: timestamppb.New(time.Now().Add(500 * time.Millisecond))})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call past its deadline: got %v, want DeadlineExceeded", err)
	}
	select {
	case herr := <-cancelled:
		if !errors.Is(herr, context.DeadlineExceeded) && !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler ctx ended with %v", herr)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the remote handler was not cancelled within 5s of the deadline (call took %v)", time.Since(start))
	}
}

// TestKilledAgentLeavesRotation: once an agent's Serve stream is gone, no
// call goes to it; the other agent takes every call.
func TestKilledAgentLeavesRotation(t *testing.T) {
	nodes := startCluster(t)
	var hitsA, hitsB atomic.Int64
	_, stopA := serveAgent(t, nodes[1], "work", map[string]agent.HandlerFunc{"work": func(context.Context, *agent.Request) (*agent.Response, error) {
		hitsA.Add(1)
		return &agent.Response{}, nil
	}})
	serveAgent(t, nodes[2], "work", map[string]agent.HandlerFunc{"work": func(context.Context, *agent.Request) (*agent.Response, error) {
		hitsB.Add(1)
		return &agent.Response{}, nil
	}})
	waitFor(t, 20*time.Second, "n1 sees both work agents ready", func() bool { return len(readyAgents(t, nodes[0], "work")) == 2 })
	stopA()
	waitFor(t, 10*time.Second, "n1 sees n2's agent leave rotation", func() bool {
		r := readyAgents(t, nodes[0], "work")
		return len(r) == 1 && r["n3/work"]
	})
	hitsA.Store(0)
	inv := meshnodev1.NewInvokeServiceClient(nodes[0].conn(t))
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: "work"})
		cancel()
		if err != nil {
			t.Fatalf("call %d after the agent left: %v", i, err)
		}
		if resp.GetAgentId() != "n3/work" {
			t.Fatalf("call %d answered by %s, want n3/work", i, resp.GetAgentId())
		}
	}
	if hitsA.Load() != 0 {
		t.Fatalf("the stopped agent handled %d calls", hitsA.Load())
	}
}

// TestBadCalls: unknown capability, oversized payload, past deadline.
func TestBadCalls(t *testing.T) {
	nodes := startCluster(t)
	inv := meshnodev1.NewInvokeServiceClient(nodes[0].conn(t))
	ctx := context.Background()
	cases := []struct {
		name string
		req  *meshnodev1.CallRequest
		want codes.Code
	}{
		{"unknown capability", &meshnodev1.CallRequest{Capability: "no.such.thing"}, codes.NotFound},
		{"payload over the limit", &meshnodev1.CallRequest{Capability: "x", Payload: make([]byte, 4<<20+1)}, codes.InvalidArgument},
		{"deadline passed", &meshnodev1.CallRequest{Capability: "x", Deadline: timestamppb.New(time.Now().Add(-time.Second))}, codes.DeadlineExceeded},
		{"empty capability", &meshnodev1.CallRequest{}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := inv.Call(ctx, tc.req)
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
	// Bad registrations.
	reg := meshnodev1.NewRegistryServiceClient(nodes[0].conn(t))
	many := make([]*meshnodev1.Capability, 257)
	for i := range many {
		many[i] = &meshnodev1.Capability{Name: fmt.Sprintf("c%d", i)}
	}
	for name, req := range map[string]*meshnodev1.RegisterRequest{
		"empty name":        {Capabilities: []*meshnodev1.Capability{{Name: "a"}}},
		"257 capabilities":  {Name: "many", Capabilities: many},
		"negative cost":     {Name: "neg", Capabilities: []*meshnodev1.Capability{{Name: "a", Cost: -1}}},
		"short vote key":    {Name: "key", Capabilities: []*meshnodev1.Capability{{Name: "a"}}, VotePublicKey: []byte{1, 2}},
		"capability spaces": {Name: "sp", Capabilities: []*meshnodev1.Capability{{Name: "a b"}}},
	} {
		if _, err := reg.Register(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("register with %s: got %v, want InvalidArgument", name, err)
		}
	}
}
