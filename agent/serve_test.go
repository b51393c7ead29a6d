package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent/agenttest"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestServeRegistersAndAnswersCalls(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "upper")
	a.Roles = []string{"voter"}
	a.Handle(Capability{
		Name: "text.upper", Attributes: map[string]string{"lang": "en"},
		Proficiency: Expert, Cost: 1.5, MaxConcurrency: 4,
	}, func(ctx context.Context, r *Request) (*Response, error) {
		return &Response{Payload: []byte(strings.ToUpper(string(r.Payload))), ContentType: "text/plain",
			Metadata: map[string]string{"seen-type": r.ContentType}}, nil
	})
	serve(t, a)

	res, err := dial(t, node).Call(timeout(t, 10*time.Second), "text.upper", []byte("hi"), WithContentType("text/x-greeting"))
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Payload) != "HI" || res.ContentType != "text/plain" || res.Metadata["seen-type"] != "text/x-greeting" {
		t.Errorf("result = %q %q %v, want HI text/plain seen-type=text/x-greeting", res.Payload, res.ContentType, res.Metadata)
	}
	if res.AgentID != "test-node/upper" || res.Node != "test-node" || res.Attempts != 1 {
		t.Errorf("answered by %q on %q after %d attempts, want test-node/upper on test-node after 1", res.AgentID, res.Node, res.Attempts)
	}
	if a.ID() != "test-node/upper" {
		t.Errorf("ID() = %q, want test-node/upper", a.ID())
	}

	regs := node.Registrations()
	if len(regs) != 1 {
		t.Fatalf("%d registrations, want 1", len(regs))
	}
	pub, err := a.VotePublicKey()
	if err != nil {
		t.Fatal(err)
	}
	want := &meshnodev1.RegisterRequest{
		Name: "upper", Roles: []string{"voter"}, VotePublicKey: pub,
		Capabilities: []*meshnodev1.Capability{{
			Name: "text.upper", Attributes: map[string]string{"lang": "en"},
			Proficiency: meshnodev1.Proficiency_PROFICIENCY_EXPERT, Cost: 1.5, MaxConcurrency: 4,
		}},
	}
	if !proto.Equal(regs[0], want) {
		t.Errorf("registered %v\nwant %v", regs[0], want)
	}
	if len(pub) != ed25519.PublicKeySize {
		t.Errorf("vote key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	// The only capability runs at most 4 at once, so the agent asks for 4.
	if got := node.ServeRequests()[0]; got.GetAgentId() != "test-node/upper" || got.GetMaxInFlight() != 4 {
		t.Errorf("serve request = %v, want agent test-node/upper with max_in_flight 4", got)
	}
}

func TestHandlerErrorsBecomeCallErrors(t *testing.T) {
	node := agenttest.NewNode(t)
	a, logs := testAgent(t, node, "failing")
	a.Handle(Capability{Name: "fail"}, func(ctx context.Context, r *Request) (*Response, error) {
		switch string(r.Payload) {
		case "agent-error":
			return nil, Errorf(codes.NotFound, "no sku %d", 42)
		case "retryable":
			return nil, RetryableErrorf(codes.ResourceExhausted, "quota")
		case "wrapped-agent-error":
			return nil, errors.Join(errors.New("context"), &Error{Code: codes.FailedPrecondition, Message: "stock locked"})
		case "status":
			return nil, status.Error(codes.PermissionDenied, "not yours")
		case "status-unavailable":
			return nil, status.Error(codes.Unavailable, "backend down")
		case "deadline":
			return nil, context.DeadlineExceeded
		case "canceled":
			return nil, context.Canceled
		case "panic":
			panic("kaboom")
		case "nil":
			return nil, nil
		}
		return nil, errors.New("plain failure")
	})
	serve(t, a)

	tests := []struct {
		payload string
		want    *meshnodev1.CallError // nil: success
	}{
		{"agent-error", &meshnodev1.CallError{Code: uint32(codes.NotFound), Message: "no sku 42"}},
		{"retryable", &meshnodev1.CallError{Code: uint32(codes.ResourceExhausted), Message: "quota", Retryable: true}},
		{"wrapped-agent-error", &meshnodev1.CallError{Code: uint32(codes.FailedPrecondition), Message: "stock locked"}},
		{"status", &meshnodev1.CallError{Code: uint32(codes.PermissionDenied), Message: "not yours"}},
		{"status-unavailable", &meshnodev1.CallError{Code: uint32(codes.Unavailable), Message: "backend down", Retryable: true}},
		{"deadline", &meshnodev1.CallError{Code: uint32(codes.DeadlineExceeded), Message: "context deadline exceeded"}},
		{"canceled", &meshnodev1.CallError{Code: uint32(codes.Canceled), Message: "context canceled"}},
		{"plain", &meshnodev1.CallError{Code: uint32(codes.Unknown), Message: "plain failure"}},
		{"panic", &meshnodev1.CallError{Code: uint32(codes.Internal),
			Message: `the handler for "fail" failed; details are in agent "test-node/failing"'s log`}},
		{"nil", nil},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			rr, err := node.Deliver(timeout(t, 10*time.Second), a.ID(),
				&meshnodev1.Delivery{Capability: "fail", Payload: []byte(tt.payload), Attempt: 1})
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if rr.GetOk() == nil || len(rr.GetOk().GetPayload()) != 0 {
					t.Fatalf("answer = %v, want an empty success", rr)
				}
				return
			}
			if !proto.Equal(rr.GetError(), tt.want) {
				t.Errorf("error = %v, want %v", rr.GetError(), tt.want)
			}
		})
	}
	if logs.count("handler panicked") != 1 || logs.count("kaboom") != 1 {
		t.Errorf("want the panic logged once with its value; log:\n%s", logs)
	}
}

func TestCallErrorsKeepTheirCode(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "refuser")
	a.Handle(Capability{Name: "refuse"}, func(context.Context, *Request) (*Response, error) {
		return nil, Errorf(codes.FailedPrecondition, "out of stock")
	})
	serve(t, a)
	c := dial(t, node)
	_, err := c.Call(timeout(t, 10*time.Second), "refuse", nil)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "out of stock") {
		t.Errorf("Call error = %v, want FailedPrecondition naming the reason", err)
	}
	_, err = c.Call(timeout(t, 10*time.Second), "no.such.capability", nil)
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown capability: error = %v, want NotFound", err)
	}
}

func TestHandlerContextEndsAtDeadline(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "slow")
	type seen struct {
		err      error
		deadline time.Time
		reqDL    time.Time
	}
	got := make(chan seen, 1)
	a.Handle(Capability{Name: "slow"}, func(ctx context.Context, r *Request) (*Response, error) {
		<-ctx.Done()
		dl, _ := ctx.Deadline()
		got <- seen{ctx.Err(), dl, r.Deadline}
		return nil, ctx.Err()
	})
	serve(t, a)

	deadline := time.Now().Add(500 * time.Millisecond)
	rr, err := node.Deliver(timeout(t, 10*time.Second), a.ID(),
		&meshnodev1.Delivery{Capability: "slow", Deadline: timestamppb.New(deadline)})
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	select {
	case s = <-got:
	default:
		t.Fatalf("the handler did not run (answer %v): the machine is too loaded to deliver within 500ms", rr)
	}
	if !errors.Is(s.err, context.DeadlineExceeded) || !s.deadline.Equal(deadline) || !s.reqDL.Equal(deadline) {
		t.Errorf("handler saw err %v, ctx deadline %v, Request.Deadline %v; want DeadlineExceeded at %v", s.err, s.deadline, s.reqDL, deadline)
	}
	if codes.Code(rr.GetError().GetCode()) != codes.DeadlineExceeded {
		t.Errorf("answer = %v, want DeadlineExceeded", rr)
	}

	// A delivery whose deadline has already passed is answered without
	// running the handler.
	rr, err = node.Deliver(timeout(t, 10*time.Second), a.ID(),
		&meshnodev1.Delivery{Capability: "slow", Deadline: timestamppb.New(time.Now().Add(-time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	if codes.Code(rr.GetError().GetCode()) != codes.DeadlineExceeded || len(got) != 0 {
		t.Errorf("expired delivery: answer %v, handler ran: %v; want DeadlineExceeded without running", rr, len(got) != 0)
	}
}

func TestUnknownCapabilityIsRetryableElsewhere(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "narrow")
	a.Handle(Capability{Name: "one"}, echo)
	serve(t, a)
	if got := node.ServeRequests()[0].GetMaxInFlight(); got != DefaultMaxInFlight {
		t.Errorf("max_in_flight sent to the node = %d, want the default %d", got, DefaultMaxInFlight)
	}
	rr, err := node.Deliver(timeout(t, 10*time.Second), a.ID(), &meshnodev1.Delivery{Capability: "two"})
	if err != nil {
		t.Fatal(err)
	}
	if e := rr.GetError(); codes.Code(e.GetCode()) != codes.Unimplemented || !e.GetRetryable() || !strings.Contains(e.GetMessage(), `"two"`) {
		t.Errorf("answer = %v, want retryable Unimplemented naming the capability", rr)
	}
}

func TestMaxConcurrencyRejectsExcessDeliveries(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "single")
	a.MaxInFlight = 8
	started, release := make(chan struct{}), make(chan struct{})
	a.Handle(Capability{Name: "one-at-a-time", MaxConcurrency: 1}, func(ctx context.Context, r *Request) (*Response, error) {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &Response{Payload: []byte("done")}, nil
	})
	a.Handle(Capability{Name: "unlimited"}, echo)
	serve(t, a)
	if got := node.ServeRequests()[0].GetMaxInFlight(); got != 8 {
		t.Errorf("max_in_flight sent to the node = %d, want MaxInFlight, 8", got)
	}

	first := make(chan *meshnodev1.RespondRequest, 1)
	go func() {
		rr, err := node.Deliver(context.Background(), a.ID(), &meshnodev1.Delivery{Capability: "one-at-a-time"})
		if err != nil {
			t.Error(err)
		}
		first <- rr
	}()
	<-started
	rr, err := node.Deliver(timeout(t, 10*time.Second), a.ID(), &meshnodev1.Delivery{Capability: "one-at-a-time"})
	if err != nil {
		t.Fatal(err)
	}
	if e := rr.GetError(); codes.Code(e.GetCode()) != codes.ResourceExhausted || !e.GetRetryable() {
		t.Errorf("second concurrent delivery: %v, want retryable ResourceExhausted", rr)
	}
	close(release)
	if rr := <-first; string(rr.GetOk().GetPayload()) != "done" {
		t.Errorf("first delivery: %v, want done", rr)
	}
}

func TestSecondAgentWithTheSameNameStopsServing(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "dup")
	a.Handle(Capability{Name: "x"}, echo)
	serve(t, a)

	b, _ := testAgent(t, node, "dup")
	b.Handle(Capability{Name: "x"}, echo)
	err := b.Serve(timeout(t, 10*time.Second))
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "test-node/dup") {
		t.Errorf("Serve = %v, want AlreadyExists naming the agent", err)
	}
}

func TestServeNeedsACapability(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "idle")
	if err := a.Serve(timeout(t, 10*time.Second)); !errors.Is(err, ErrNoHandlers) {
		t.Errorf("Serve = %v, want ErrNoHandlers", err)
	}
	if n := len(node.Registrations()); n != 0 {
		t.Errorf("%d registrations sent, want 0", n)
	}
}

func TestServeTwiceIsRefused(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "twice")
	a.Handle(Capability{Name: "x"}, echo)
	serve(t, a)
	if err := a.Serve(timeout(t, 10*time.Second)); !errors.Is(err, errAlreadyServing) {
		t.Errorf("second Serve = %v, want errAlreadyServing", err)
	}
}

func TestCloseStopsServe(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "closer")
	a.Handle(Capability{Name: "x"}, echo)
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(context.Background()) }()
	if err := a.Up(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Serve after Close = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if err := a.Register(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close = %v, want ErrClosed", err)
	}
}

func TestDeregister(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "leaving")
	a.Handle(Capability{Name: "x"}, echo)
	if err := a.Register(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := node.Agent("leaving"); !ok {
		t.Fatal("agent not registered")
	}
	if err := a.Deregister(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := node.Agent("leaving"); ok {
		t.Error("agent still registered after Deregister")
	}
}

// Answers ride the Attach stream; a node without Attach gets them as unary
// Respond and Vote calls, and the agent works the same.
func TestAnswersUseAttachWhenTheNodeHasIt(t *testing.T) {
	for _, noAttach := range []bool{false, true} {
		node := agenttest.NewNode(t)
		if noAttach {
			node.NoAttach = true
			if err := node.Restart(); err != nil {
				t.Fatal(err)
			}
		}
		a, _ := testAgent(t, node, "both")
		a.Handle(Capability{Name: "text.upper"}, echo)
		a.HandleVote("", func(context.Context, *meshnodev1.Proposal) (Choice, string, error) { return Approve, "", nil })
		serve(t, a)
		res, err := dial(t, node).Call(timeout(t, 10*time.Second), "text.upper", []byte("hi"))
		if err != nil || string(res.Payload) != "HI" {
			t.Fatalf("NoAttach=%v: call: %v %v", noAttach, err, res)
		}
		vr, err := node.AskVote(timeout(t, 10*time.Second), a.ID(), &meshnodev1.VoteAsk{
			Proposal: &meshnodev1.Proposal{Id: "p", Kind: "k", Payload: []byte("x")}})
		if err != nil || vr.GetVote().GetChoice() != Approve {
			t.Fatalf("NoAttach=%v: vote: %v %v", noAttach, err, vr)
		}
		want := [2]int{0, 2}
		if noAttach {
			want = [2]int{2, 0}
		}
		if unary, onStream := node.Answers(); [2]int{unary, onStream} != want {
			t.Errorf("NoAttach=%v: %d unary answers, %d on the stream; want %d and %d", noAttach, unary, onStream, want[0], want[1])
		}
	}
}
