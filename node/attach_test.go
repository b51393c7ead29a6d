package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/node"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// TestAttachAnswersOnTheStream drives an Attach stream by hand: a call is
// delivered on it and answered on it; answers the node does not take come
// back as AnswerRefused events without ending the stream; a stream that
// does not start with serve is refused.
func TestAttachAnswersOnTheStream(t *testing.T) {
	tn := startTestNode(t, t.TempDir(), "n1", true, nil, "")
	conn := tn.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := meshnodev1.NewRegistryServiceClient(conn)
	if _, err := reg.Register(ctx, &meshnodev1.RegisterRequest{Name: "raw", Capabilities: []*meshnodev1.Capability{{Name: "raw.echo"}}}); err != nil {
		t.Fatal(err)
	}
	inv := meshnodev1.NewInvokeServiceClient(conn)

	bad, err := inv.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad.Send(&meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{CallId: "x"}}})
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a stream opened with an answer: %v, want InvalidArgument", err)
	}

	stream, err := inv.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Serve{Serve: &meshnodev1.ServeRequest{AgentId: "raw"}}}); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetReady().GetAgentId() != "n1/raw" {
		t.Fatalf("first event %v, %v; want ready for n1/raw", ev, err)
	}
	refused := func(what string, m *meshnodev1.AttachRequest, want codes.Code) {
		t.Helper()
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("%s: the stream ended: %v", what, err)
		}
		if r := ev.GetRefused(); r == nil || codes.Code(r.GetCode()) != want || r.GetMessage() == "" {
			t.Fatalf("%s: got %v, want a refusal with %s", what, ev, want)
		}
	}
	refused("an answer to no call", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{CallId: "no-such-call"}}}, codes.NotFound)
	refused("an answer for another agent", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{AgentId: "n1/other", CallId: "c"}}}, codes.PermissionDenied)
	refused("a vote for another agent", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Vote{Vote: &meshnodev1.VoteRequest{RequestId: "r", Vote: &meshnodev1.Vote{VoterAgentId: "n1/other"}}}}, codes.PermissionDenied)
	refused("a second serve", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Serve{Serve: &meshnodev1.ServeRequest{AgentId: "raw"}}}, codes.InvalidArgument)

	// The stream still serves: a call is delivered on it and answered on it.
	waitFor(t, 10*time.Second, "raw is ready", func() bool { return len(readyAgents(t, tn, "raw.echo")) == 1 })
	type result struct {
		resp *meshnodev1.CallResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: "raw.echo", Payload: []byte("ping")})
		done <- result{resp, err}
	}()
	ev, err = stream.Recv()
	if err != nil || ev.GetCall() == nil {
		t.Fatalf("waiting for the delivery: %v, %v", ev, err)
	}
	d := ev.GetCall()
	if err := stream.Send(&meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{CallId: d.GetCallId(),
		Result: &meshnodev1.RespondRequest_Ok{Ok: &meshnodev1.CallResult{Payload: append([]byte("pong:"), d.GetPayload()...)}}}}}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || string(r.resp.GetPayload()) != "pong:ping" || r.resp.GetAgentId() != "n1/raw" {
		t.Fatalf("call answered on the stream: %v, %v", r.resp, r.err)
	}

	// Closing the agent's side ends the stream and takes the agent out of rotation.
	stream.CloseSend()
	if _, err := stream.Recv(); err == nil {
		t.Fatal("the stream outlived the agent's side")
	}
	waitFor(t, 10*time.Second, "raw leaves rotation", func() bool { return len(readyAgents(t, tn, "raw.echo")) == 0 })
}

// TestOversizedResponseFailsTheCallNotTheAgent: a handler that answers with
// more than the node takes gets its caller a prompt ResourceExhausted, not
// a wait until the deadline, and the agent goes on serving: over the
// payload limit (the node refuses it) and over the node's message limit
// (gRPC refuses it before the node reads it).
func TestOversizedResponseFailsTheCallNotTheAgent(t *testing.T) {
	tn := startTestNode(t, t.TempDir(), "n1", true, nil, "")
	limit := node.DefaultConfig().MaxPayload
	serveAgent(t, tn, "big", map[string]agent.HandlerFunc{"big.answer": func(_ context.Context, r *agent.Request) (*agent.Response, error) {
		switch string(r.Payload) {
		case "over-payload-limit":
			return &agent.Response{Payload: make([]byte, limit+1)}, nil
		case "over-message-limit":
			return &agent.Response{Payload: make([]byte, limit+1<<20)}, nil
		}
		return &agent.Response{Payload: []byte("small")}, nil
	}})
	waitFor(t, 10*time.Second, "the agent is ready", func() bool { return len(readyAgents(t, tn, "big.answer")) == 1 })
	inv := meshnodev1.NewInvokeServiceClient(tn.conn(t))
	call := func(what string) (*meshnodev1.CallResponse, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: "big.answer", Payload: []byte(what)}, grpc.MaxCallRecvMsgSize(16<<20))
		return resp, time.Since(start), err
	}
	for _, what := range []string{"over-payload-limit", "over-message-limit"} {
		_, took, err := call(what)
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "limit") {
			t.Errorf("%s: %v, want ResourceExhausted naming the limit", what, err)
		}
		if took > 5*time.Second {
			t.Errorf("%s: the caller waited %v for its error", what, took)
		}
		if resp, _, err := call("small"); err != nil || string(resp.GetPayload()) != "small" {
			t.Fatalf("after %s the agent no longer answers: %v", what, err)
		}
	}
}

// TestStalledAttachIsCutOff: a client that opens Attach and never says which
// agent it serves is cut off, and the node goes on serving other agents.
func TestStalledAttachIsCutOff(t *testing.T) {
	t.Cleanup(node.SetAttachOpenTimeout(300 * time.Millisecond)) // restored after the node stops
	tn := startTestNode(t, t.TempDir(), "n1", true, nil, "")
	serveAgent(t, tn, "echo", map[string]agent.HandlerFunc{"stall.echo": echoFrom("n1")})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	inv := meshnodev1.NewInvokeServiceClient(tn.conn(t))
	stalled, err := inv.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := stalled.Recv(); status.Code(err) != codes.DeadlineExceeded || !strings.Contains(status.Convert(err).Message(), "serve") {
		t.Fatalf("a silent Attach stream: %v, want DeadlineExceeded asking for serve", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cut off after %v", took)
	}
	waitFor(t, 10*time.Second, "echo is ready", func() bool { return len(readyAgents(t, tn, "stall.echo")) == 1 })
	if resp, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: "stall.echo", Payload: []byte("x")}); err != nil || string(resp.GetPayload()) != "n1:x" {
		t.Fatalf("another agent after the stall: %v %q", err, resp.GetPayload())
	}
}
