package hub

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// fakeAttach is the agent's end of an Attach stream, in memory.
type fakeAttach struct {
	ctx    context.Context
	in     chan *meshnodev1.AttachRequest // what the agent sends; closed: its side ended
	events chan *meshnodev1.ServeResponse
}

func newFakeAttach(ctx context.Context) *fakeAttach {
	return &fakeAttach{ctx: ctx, in: make(chan *meshnodev1.AttachRequest, 16), events: make(chan *meshnodev1.ServeResponse, 16)}
}

func (f *fakeAttach) Context() context.Context { return f.ctx }

func (f *fakeAttach) Send(ev *meshnodev1.ServeResponse) error {
	f.events <- ev
	return nil
}

func (f *fakeAttach) Recv() (*meshnodev1.AttachRequest, error) {
	select {
	case m, ok := <-f.in:
		if !ok {
			return nil, io.EOF
		}
		return m, nil
	case <-f.ctx.Done():
		return nil, f.ctx.Err()
	}
}

func (f *fakeAttach) next(t *testing.T) *meshnodev1.ServeResponse {
	t.Helper()
	select {
	case ev := <-f.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the Attach stream")
	}
	return nil
}

func serveMsg(name string) *meshnodev1.AttachRequest {
	return &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Serve{Serve: &meshnodev1.ServeRequest{AgentId: name}}}
}

func TestAttachOpening(t *testing.T) {
	tests := []struct {
		name  string
		first *meshnodev1.AttachRequest // nil: the agent sends nothing
		kind  error
		code  codes.Code
	}{
		{"an answer first", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{CallId: "x"}}}, ErrBadAttach, codes.InvalidArgument},
		{"an empty message", &meshnodev1.AttachRequest{}, ErrBadAttach, codes.InvalidArgument},
		{"another process's agent", serveMsg("b"), ErrNotOwner, codes.PermissionDenied},
		{"an unknown agent", serveMsg("ghost"), ErrNotRegistered, codes.NotFound},
		{"nothing within the timeout", nil, ErrAttachTimeout, codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			h := newTestHub(t, Config{Clock: clock, AttachOpenTimeout: 5 * time.Second})
			h.Claim("n1/b", bob)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st := newFakeAttach(ctx)
			if tt.first != nil {
				st.in <- tt.first
			}
			res := make(chan error, 1)
			go func() { res <- h.Attach(alice, st) }()
			if tt.first == nil {
				clock.waitAsked(t, 5*time.Second)
				clock.Advance(5 * time.Second)
			}
			wantErr(t, "Attach", <-res, tt.kind, tt.code)
		})
	}
}

// TestAttachAnswers: answers ride the stream; the ones the hub does not
// take come back as refusals without ending it.
func TestAttachAnswers(t *testing.T) {
	var answered []error
	h := newTestHub(t, Config{OnAnswer: func(_ string, _ *meshnodev1.AttachRequest, err error) { answered = append(answered, err) }})
	h.Claim("n1/a", alice)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := newFakeAttach(ctx)
	st.in <- serveMsg("a")
	res := make(chan error, 1)
	go func() { res <- h.Attach(alice, st) }()
	if ev := st.next(t); ev.GetReady().GetAgentId() != "n1/a" {
		t.Fatalf("first event %v, want ready", ev)
	}

	refusals := []struct {
		name string
		m    *meshnodev1.AttachRequest
		code codes.Code
	}{
		{"an answer to no call", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{CallId: "none"}}}, codes.NotFound},
		{"an answer for another agent", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{AgentId: "n1/b", CallId: "c"}}}, codes.PermissionDenied},
		{"a vote for another agent", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Vote{Vote: &meshnodev1.VoteRequest{RequestId: "r", Vote: &meshnodev1.Vote{VoterAgentId: "n1/b"}}}}, codes.PermissionDenied},
		{"a vote for no request", &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Vote{Vote: &meshnodev1.VoteRequest{RequestId: "r", Vote: &meshnodev1.Vote{VoterAgentId: "a"}}}}, codes.NotFound},
		{"a second serve", serveMsg("a"), codes.InvalidArgument},
	}
	for _, r := range refusals {
		st.in <- r.m
		ev := st.next(t)
		if got := ev.GetRefused(); got == nil || codes.Code(got.GetCode()) != r.code || got.GetMessage() == "" {
			t.Errorf("%s: got %v, want a refusal with %s", r.name, ev, r.code)
		}
	}

	// A call is delivered on the stream and answered on it.
	done := make(chan delivered, 1)
	go func() {
		r, err := h.Deliver(ctx, "n1/a", &meshnodev1.Delivery{Payload: []byte("ping")}, CallContext{})
		done <- delivered{r, err}
	}()
	d := st.next(t).GetCall()
	st.in <- &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{CallId: d.GetCallId(),
		Result: &meshnodev1.RespondRequest_Ok{Ok: &meshnodev1.CallResult{Payload: []byte("pong")}}}}}
	if got := <-done; got.err != nil || string(got.r.GetOk().GetPayload()) != "pong" {
		t.Fatalf("call answered on the stream: %v, %v", got.r, got.err)
	}

	// The agent's side ends: so does the stream, and the agent stops serving.
	close(st.in)
	if err := <-res; err != nil {
		t.Errorf("Attach after the agent's side ended: %v, want nil", err)
	}
	if h.Serving("n1/a") {
		t.Error("still serving")
	}
	if len(answered) != len(refusals)+1 || answered[len(answered)-1] != nil {
		t.Errorf("OnAnswer heard %v, want %d refusals and then the answer", answered, len(refusals))
	}
}

// TestRefusalsAreBounded: an agent flooding answers nobody waits for loses
// the surplus refusals, never the stream.
func TestRefusalsAreBounded(t *testing.T) {
	h := newTestHub(t, Config{MaxRefusals: 1})
	h.Claim("n1/a", alice)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := newFakeAttach(ctx)
	st.events = make(chan *meshnodev1.ServeResponse) // unbuffered: the serve loop blocks on it
	st.in <- serveMsg("a")
	go h.Attach(alice, st)
	st.next(t) // ready
	for range 5 {
		st.in <- &meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Respond{Respond: &meshnodev1.RespondRequest{CallId: "none"}}}
	}
	// However many were dropped, the stream still carries calls.
	go h.Deliver(ctx, "n1/a", &meshnodev1.Delivery{}, CallContext{})
	for {
		if st.next(t).GetCall() != nil {
			return
		}
	}
}
