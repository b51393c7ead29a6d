package hub

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

type delivered struct {
	r   *meshnodev1.RespondRequest
	err error
}

// deliverAsync starts a Deliver and returns the call the agent received.
func deliverAsync(t *testing.T, ctx context.Context, h *Hub, a *fakeAgent, cc CallContext) (*meshnodev1.Delivery, chan delivered) {
	t.Helper()
	res := make(chan delivered, 1)
	go func() {
		r, err := h.Deliver(ctx, a.id, &meshnodev1.Delivery{Capability: "echo", Payload: []byte("x")}, cc)
		res <- delivered{r, err}
	}()
	d := a.next(t).GetCall()
	if d == nil || d.GetCallId() == "" {
		t.Fatalf("the agent got %v, want a call with an id", d)
	}
	return d, res
}

func TestDeliver(t *testing.T) {
	tests := []struct {
		name string
		// end does something to the delivered call; the Deliver then
		// returns kind (nil: the answer).
		end    func(h *Hub, a *fakeAgent, d *meshnodev1.Delivery, cancel context.CancelFunc)
		kind   error
		code   codes.Code
		cancel bool // the agent is told to stop handling the call
	}{
		{"answered", func(h *Hub, a *fakeAgent, d *meshnodev1.Delivery, _ context.CancelFunc) {
			h.Respond(a.id, &meshnodev1.RespondRequest{CallId: d.GetCallId(), Result: &meshnodev1.RespondRequest_Ok{Ok: &meshnodev1.CallResult{Payload: []byte("y")}}})
		}, nil, codes.OK, false},
		{"caller cancels", func(_ *Hub, _ *fakeAgent, _ *meshnodev1.Delivery, cancel context.CancelFunc) { cancel() },
			context.Canceled, codes.Canceled, true},
		{"agent goes away", func(h *Hub, a *fakeAgent, _ *meshnodev1.Delivery, _ context.CancelFunc) { h.Remove(a.id) },
			ErrNotServing, codes.Unavailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHub(t, Config{})
			a := serve(t, h, alice, "a", 0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d, res := deliverAsync(t, ctx, h, a, CallContext{})
			tt.end(h, a, d, cancel)
			got := <-res
			wantErr(t, "Deliver", got.err, tt.kind, tt.code)
			if tt.kind == nil && string(got.r.GetOk().GetPayload()) != "y" {
				t.Errorf("answer %v, want y", got.r)
			}
			if tt.cancel {
				if c := a.next(t).GetCancel(); c.GetCallId() != d.GetCallId() {
					t.Errorf("the agent got %v, want a cancel of %s", c, d.GetCallId())
				}
			}
			// Whatever happened, the call is no longer pending.
			if _, ok := h.Parent(d.GetCallId()); ok {
				t.Error("the call is still pending")
			}
			wantErr(t, "a late answer", h.Respond(a.id, &meshnodev1.RespondRequest{CallId: d.GetCallId()}), ErrCallNotPending, codes.NotFound)
		})
	}
}

func TestDeliverDeadline(t *testing.T) {
	h := newTestHub(t, Config{})
	a := serve(t, h, alice, "a", 0)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	_, err := h.Deliver(ctx, a.id, &meshnodev1.Delivery{}, CallContext{})
	wantErr(t, "Deliver past its deadline", err, context.DeadlineExceeded, codes.DeadlineExceeded)
}

func TestDeliverRefusals(t *testing.T) {
	h := newTestHub(t, Config{Limit: func(string, *meshnodev1.ServeRequest) int32 { return 1 }})
	_, err := h.Deliver(context.Background(), "n1/nobody", &meshnodev1.Delivery{}, CallContext{})
	wantErr(t, "to an agent that does not serve", err, ErrNotServing, codes.Unavailable)

	a := serve(t, h, alice, "a", 0)
	d, res := deliverAsync(t, context.Background(), h, a, CallContext{})
	if l, _ := h.Load(a.id); l.InFlight != 1 || l.Capacity != 1 {
		t.Errorf("load %+v, want 1 of 1 in flight", l)
	}
	_, err = h.Deliver(context.Background(), a.id, &meshnodev1.Delivery{}, CallContext{})
	wantErr(t, "over the limit", err, ErrBusy, codes.ResourceExhausted)
	h.Respond(a.id, &meshnodev1.RespondRequest{CallId: d.GetCallId()})
	<-res
	if l, _ := h.Load(a.id); l.InFlight != 0 {
		t.Errorf("%d in flight after the answer", l.InFlight)
	}
}

func TestCallIDs(t *testing.T) {
	for _, keep := range []bool{false, true} {
		h := newTestHub(t, Config{KeepCallIDs: keep})
		a := serve(t, h, alice, "a", 0)
		go h.Deliver(context.Background(), a.id, &meshnodev1.Delivery{CallId: "chosen"}, CallContext{})
		d := a.next(t).GetCall()
		if got := d.GetCallId() == "chosen"; got != keep {
			t.Errorf("KeepCallIDs=%v: call id %q", keep, d.GetCallId())
		}
		h.Respond(a.id, &meshnodev1.RespondRequest{CallId: d.GetCallId()})
	}
}

func TestRespond(t *testing.T) {
	h := newTestHub(t, Config{MaxPayload: 4})
	a := serve(t, h, alice, "a", 0)
	b := serve(t, h, bob, "b", 0)
	cc := CallContext{Chain: []string{"n2/caller"}, Hops: 2, Deadline: time.Now().Add(time.Hour)}
	d, res := deliverAsync(t, context.Background(), h, a, cc)

	p, ok := h.Parent(d.GetCallId())
	if !ok || p.AgentID != a.id || p.Hops != 2 || !slices.Equal(p.Chain, cc.Chain) || !p.Deadline.Equal(cc.Deadline) {
		t.Errorf("Parent = %+v, %v; want %s with the call's context", p, ok, a.id)
	}
	wantErr(t, "an unknown call", h.Respond(a.id, &meshnodev1.RespondRequest{CallId: "no-such-call"}), ErrCallNotPending, codes.NotFound)
	wantErr(t, "another agent's call", h.Respond(b.id, &meshnodev1.RespondRequest{CallId: d.GetCallId()}), ErrCallNotPending, codes.NotFound)
	big := &meshnodev1.RespondRequest{CallId: d.GetCallId(), Result: &meshnodev1.RespondRequest_Ok{Ok: &meshnodev1.CallResult{Payload: []byte("too big")}}}
	wantErr(t, "an answer over the payload limit", h.Respond(a.id, big), ErrPayloadTooLarge, codes.InvalidArgument)
	got := <-res
	if e := got.r.GetError(); got.err != nil || codes.Code(e.GetCode()) != codes.ResourceExhausted {
		t.Errorf("the caller got %v, %v; want a ResourceExhausted answer at once", got.r, got.err)
	}
}

func TestSecondAnswer(t *testing.T) {
	h := newTestHub(t, Config{})
	a := serve(t, h, alice, "a", 0)
	go h.Deliver(context.Background(), a.id, &meshnodev1.Delivery{}, CallContext{})
	d := a.next(t).GetCall()
	// Both answers race the Deliver's end: the second is either a second
	// answer or one for a call no longer pending; never taken.
	wantErr(t, "first", h.Respond(a.id, &meshnodev1.RespondRequest{CallId: d.GetCallId()}), nil, codes.OK)
	err := h.Respond(a.id, &meshnodev1.RespondRequest{CallId: d.GetCallId()})
	if code := Code(err); err == nil || (code != codes.AlreadyExists && code != codes.NotFound) {
		t.Errorf("second answer: %v, want AlreadyExists or NotFound", err)
	}
}

func TestVotes(t *testing.T) {
	clock := newFakeClock()
	type double struct{ first, second *meshnodev1.Vote }
	doubles := make(chan double, 1)
	h := newTestHub(t, Config{Clock: clock, VoteMemory: time.Minute, SecondVote: func(_ context.Context, first, second *meshnodev1.Vote) {
		doubles <- double{first, second}
	}})
	a := serve(t, h, alice, "a", 0)
	deadline := clock.Now().Add(10 * time.Second)
	p := &meshnodev1.Proposal{Id: "p1", Deadline: timestampAt(deadline)}
	type voted struct {
		v   *meshnodev1.Vote
		err error
	}
	res := make(chan voted, 1)
	go func() {
		v, err := h.AskVote(context.Background(), a.id, p, "cluster-1")
		res <- voted{v, err}
	}()
	ask := a.next(t).GetVote()
	if ask.GetRequestId() == "" || ask.GetClusterId() != "cluster-1" || ask.GetProposal().GetId() != "p1" {
		t.Fatalf("the agent got %v", ask)
	}
	approve := &meshnodev1.Vote{VoterAgentId: a.id, ProposalId: "p1", Choice: meshnodev1.Choice_CHOICE_APPROVE}
	reject := &meshnodev1.Vote{VoterAgentId: a.id, ProposalId: "p1", Choice: meshnodev1.Choice_CHOICE_REJECT}
	vote := func(v *meshnodev1.Vote) error {
		return h.Vote(context.Background(), a.id, &meshnodev1.VoteRequest{RequestId: ask.GetRequestId(), Vote: v})
	}
	wantErr(t, "another agent's vote", h.Vote(context.Background(), "n1/b", &meshnodev1.VoteRequest{RequestId: ask.GetRequestId(), Vote: approve}), ErrVoteNotPending, codes.NotFound)
	wantErr(t, "the vote", vote(approve), nil, codes.OK)
	if got := <-res; got.err != nil || !proto.Equal(got.v, approve) {
		t.Fatalf("AskVote = %v, %v; want the approval", got.v, got.err)
	}
	// The request is remembered after the ask returned: a second vote is
	// refused and reported with the first.
	wantErr(t, "a second vote", vote(reject), ErrAlreadyAnswered, codes.AlreadyExists)
	if d := <-doubles; !proto.Equal(d.first, approve) || !proto.Equal(d.second, reject) {
		t.Errorf("SecondVote got %v and %v", d.first, d.second)
	}
	// Until VoteMemory after the deadline.
	h.reap(context.Background(), deadline.Add(time.Minute))
	wantErr(t, "a vote at the end of the memory", vote(reject), ErrAlreadyAnswered, codes.AlreadyExists)
	<-doubles
	h.reap(context.Background(), deadline.Add(time.Minute+time.Second))
	wantErr(t, "a vote after it", vote(reject), ErrVoteNotPending, codes.NotFound)
	if n := h.votes.len(); n != 0 {
		t.Errorf("%d vote requests remembered", n)
	}
}

func TestAskVoteOfAnAgentNotServing(t *testing.T) {
	h := newTestHub(t, Config{})
	_, err := h.AskVote(context.Background(), "n1/a", &meshnodev1.Proposal{Id: "p"}, "c")
	wantErr(t, "AskVote", err, ErrNotServing, codes.Unavailable)
	a := serve(t, h, alice, "a", 0)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := h.AskVote(ctx, a.id, &meshnodev1.Proposal{Id: "p"}, "c")
		res <- err
	}()
	a.next(t)
	cancel()
	wantErr(t, "AskVote cancelled", <-res, context.Canceled, codes.Canceled)
}

// A vote request's asker may wait less than its proposal's deadline (the
// data plane caps a peer's at MaxVoteWait): the agent is told the earlier
// deadline and the request is remembered VoteMemory past it, not past the
// proposal's.
func TestAskVoteDeadlineIsTheAskersWait(t *testing.T) {
	clock := newFakeClock()
	h := newTestHub(t, Config{Clock: clock, VoteMemory: time.Minute})
	a := serve(t, h, alice, "a", 0)
	waitUntil := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), waitUntil)
	defer cancel()
	p := &meshnodev1.Proposal{Id: "p1", Deadline: timestampAt(waitUntil.Add(100 * 365 * 24 * time.Hour))}
	res := make(chan error, 1)
	go func() {
		_, err := h.AskVote(ctx, a.id, p, "cluster-1")
		res <- err
	}()
	ask := a.next(t).GetVote()
	if got := ask.GetDeadline().AsTime(); !got.Equal(waitUntil) {
		t.Errorf("the agent was told %v, want the asker's deadline %v", got, waitUntil)
	}
	if !p.GetDeadline().AsTime().After(waitUntil) {
		t.Errorf("the proposal's own deadline was changed to %v", p.GetDeadline().AsTime())
	}
	vote := func() error {
		return h.Vote(context.Background(), a.id, &meshnodev1.VoteRequest{RequestId: ask.GetRequestId(),
			Vote: &meshnodev1.Vote{VoterAgentId: a.id, ProposalId: "p1", Choice: meshnodev1.Choice_CHOICE_APPROVE}})
	}
	wantErr(t, "the vote", vote(), nil, codes.OK)
	if err := <-res; err != nil {
		t.Fatalf("AskVote: %v", err)
	}
	h.reap(context.Background(), waitUntil.Add(time.Minute+time.Second))
	wantErr(t, "a vote VoteMemory after the asker's deadline", vote(), ErrVoteNotPending, codes.NotFound)
}
