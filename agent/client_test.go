package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	"github.com/agentmesh/meshnode/agent/agenttest"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

var (
	testTraceID = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	testSpanID  = trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func withTestSpan(ctx context.Context) context.Context {
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: testTraceID, SpanID: testSpanID, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
}

func TestCallOptionsReachTheHandler(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "opts")
	got := make(chan *Request, 1)
	a.Handle(Capability{Name: "inspect"}, func(ctx context.Context, r *Request) (*Response, error) {
		got <- r
		return nil, nil
	})
	serve(t, a)

	deadline := time.Now().Add(30 * time.Second).Truncate(time.Microsecond)
	ctx, cancel := context.WithDeadline(withTestSpan(context.Background()), deadline)
	defer cancel()
	_, err := dial(t, node).Call(ctx, "inspect", []byte(`{"sku":1}`),
		WithContentType("application/json"), WithIdempotencyKey("order-7"),
		WithMetadata("tenant", "acme"), WithMetadata("priority", "high"))
	if err != nil {
		t.Fatal(err)
	}

	sent := node.Calls()[0]
	if !sent.GetDeadline().AsTime().Equal(deadline) {
		t.Errorf("CallRequest.deadline = %v, want the ctx deadline %v", sent.GetDeadline().AsTime(), deadline)
	}
	if sent.GetCallerAgentId() != "" || sent.GetParentCallId() != "" {
		t.Errorf("a plain client's call names caller %q parent %q, want neither", sent.GetCallerAgentId(), sent.GetParentCallId())
	}
	r := <-got
	if string(r.Payload) != `{"sku":1}` || r.ContentType != "application/json" || r.IdempotencyKey != "order-7" ||
		r.Attempt != 1 || !r.Deadline.Equal(deadline) {
		t.Errorf("request = %+v", r)
	}
	want := map[string]string{"tenant": "acme", "priority": "high", "traceparent": testTraceparent}
	for k, v := range want {
		if r.Metadata[k] != v {
			t.Errorf("metadata[%q] = %q, want %q (all: %v)", k, r.Metadata[k], v, r.Metadata)
		}
	}
}

// A call made from inside a handler names the handled call as its parent and
// the handling agent as its caller, and continues the caller's trace.
func TestNestedCallCarriesParentCallAndTrace(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "nest")
	innerSaw := make(chan *Request, 1)
	a.Handle(Capability{Name: "outer"}, func(ctx context.Context, r *Request) (*Response, error) {
		if CallIDFromContext(ctx) != r.CallID {
			return nil, Errorf(codes.Internal, "CallIDFromContext = %q, want %q", CallIDFromContext(ctx), r.CallID)
		}
		res, err := a.Call(ctx, "inner", r.Payload)
		if err != nil {
			return nil, err
		}
		return &Response{Payload: res.Payload}, nil
	})
	a.Handle(Capability{Name: "inner"}, func(ctx context.Context, r *Request) (*Response, error) {
		innerSaw <- r
		return &Response{Payload: []byte("inner:" + string(r.Payload))}, nil
	})
	serve(t, a)

	rr, err := node.Deliver(timeout(t, 10*time.Second), a.ID(), &meshnodev1.Delivery{
		CallId: "outer-1", Capability: "outer", Payload: []byte("x"),
		Metadata: map[string]string{"traceparent": testTraceparent},
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := rr.GetError(); e != nil {
		t.Fatalf("outer failed: %v", e)
	}
	calls := node.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls reached the node, want the inner one", len(calls))
	}
	inner := calls[0]
	if inner.GetParentCallId() != "outer-1" || inner.GetCallerAgentId() != "test-node/nest" {
		t.Errorf("inner call parent %q caller %q, want outer-1 and test-node/nest", inner.GetParentCallId(), inner.GetCallerAgentId())
	}
	if tp := inner.GetMetadata()["traceparent"]; !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
		t.Errorf("inner traceparent = %q, want the outer call's trace id", tp)
	}
	if r := <-innerSaw; r.Caller != "test-node/nest" || !slices.Equal(r.Chain, []string{"test-node/nest"}) {
		t.Errorf("inner handler saw caller %q chain %v", r.Caller, r.Chain)
	}
}

func TestAgentCallNamesItselfAsCaller(t *testing.T) {
	node := agenttest.NewNode(t)
	a, _ := testAgent(t, node, "caller")
	a.Handle(Capability{Name: "echo"}, echo)
	serve(t, a)
	if _, err := a.Call(timeout(t, 10*time.Second), "echo", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := node.Calls()[0]; got.GetCallerAgentId() != "test-node/caller" || got.GetParentCallId() != "" {
		t.Errorf("caller %q parent %q, want test-node/caller and no parent", got.GetCallerAgentId(), got.GetParentCallId())
	}
}

func TestDialUnreachableSaysWhatToDo(t *testing.T) {
	_, err := Dial(context.Background(), t.TempDir()+"/missing.sock")
	if !errors.Is(err, ErrNodeUnreachable) || !strings.Contains(err.Error(), "meshnode run") || !strings.Contains(err.Error(), SocketEnv) {
		t.Errorf("Dial = %v, want ErrNodeUnreachable telling how to start a node or set %s", err, SocketEnv)
	}
}

func TestDiscoverListAndStatus(t *testing.T) {
	node := agenttest.NewNode(t)
	eu, _ := testAgent(t, node, "eu")
	eu.Handle(Capability{Name: "llm.chat", Attributes: map[string]string{"region": "eu"}, Proficiency: Expert}, echo)
	us, _ := testAgent(t, node, "us")
	us.Handle(Capability{Name: "llm.chat", Attributes: map[string]string{"region": "us"}, Proficiency: Novice}, echo)
	us.Handle(Capability{Name: "other"}, echo)
	serve(t, eu)
	if err := us.Register(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	c := dial(t, node)
	ctx := timeout(t, 10*time.Second)

	ids := func(as []*meshnodev1.DiscoveredAgent, err error) []string {
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range as {
			out = append(out, a.GetAgent().GetId()+":"+a.GetLoad().GetStatus())
		}
		return out
	}
	if got := ids(c.Discover(ctx, "llm.chat")); !slices.Equal(got, []string{"test-node/eu:ready", "test-node/us:unknown"}) {
		t.Errorf("Discover = %v", got)
	}
	if got := ids(c.Discover(ctx, "llm.chat", WithAttribute("region", "us"))); !slices.Equal(got, []string{"test-node/us:unknown"}) {
		t.Errorf("Discover region=us = %v", got)
	}
	if got := ids(c.Discover(ctx, "llm.chat", MinProficiency(Experienced))); !slices.Equal(got, []string{"test-node/eu:ready"}) {
		t.Errorf("Discover min experienced = %v", got)
	}

	list, err := c.ListAgents(ctx, OfCapability("other"), OnNode("test-node"), Consistent())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].GetId() != "test-node/us" {
		t.Errorf("ListAgents = %v, want test-node/us", list)
	}
	if list, _ := c.ListAgents(ctx, OnNode("elsewhere")); len(list) != 0 {
		t.Errorf("ListAgents on another node = %v, want none", list)
	}

	st, err := c.Status(ctx)
	if err != nil || st.GetName() != "test-node" {
		t.Errorf("Status = %v, %v; want test-node", st, err)
	}
}
