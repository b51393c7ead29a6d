package dataplane

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeLocal is a hub with scripted agents: each delivery is recorded and
// answered with the payload echoed.
type fakeLocal struct {
	mu        sync.Mutex
	owners    map[string]hub.Owner
	parents   map[string]hub.Parent
	delivered []delivered
	voteCtx   context.Context
}

type delivered struct {
	agentID string
	d       *meshnodev1.Delivery
	cc      hub.CallContext
}

func (l *fakeLocal) AgentID(n string) string {
	if strings.Contains(n, "/") {
		return n
	}
	return "n1/" + n
}

func (l *fakeLocal) Owned(id string, o hub.Owner) error {
	if l.owners[id] != o {
		return status.Errorf(codes.PermissionDenied, "agent %s belongs to another process", id)
	}
	return nil
}

func (l *fakeLocal) Parent(id string) (hub.Parent, bool) { p, ok := l.parents[id]; return p, ok }

func (l *fakeLocal) Deliver(_ context.Context, id string, d *meshnodev1.Delivery, cc hub.CallContext) (*meshnodev1.RespondRequest, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delivered = append(l.delivered, delivered{id, d, cc})
	return &meshnodev1.RespondRequest{Result: &meshnodev1.RespondRequest_Ok{Ok: &meshnodev1.CallResult{Payload: d.GetPayload()}}}, nil
}

func (l *fakeLocal) DeliverStream(context.Context, string, *meshnodev1.Delivery, hub.CallContext) (*hub.Reply, error) {
	return nil, status.Error(codes.Unavailable, "no streaming agents in this fake")
}

func (l *fakeLocal) AskVote(ctx context.Context, id string, p *meshnodev1.Proposal, cluster string) (*meshnodev1.Vote, error) {
	l.voteCtx = ctx
	return &meshnodev1.Vote{VoterAgentId: id, ProposalId: p.GetId()}, nil
}

// fakeCatalog offers one agent for every capability.
type fakeCatalog struct{ agent, node string }

func (c fakeCatalog) Resolve(context.Context, string) ([]routing.Candidate, routing.Policy, error) {
	return []routing.Candidate{{AgentID: c.agent, Node: c.node, Ready: true, NodeAlive: true, Capability: routing.CandidateCapability{Name: "cap"}}}, routing.DefaultPolicy(), nil
}
func (c fakeCatalog) PolicyFor(context.Context, string) (routing.Policy, error) {
	return routing.DefaultPolicy(), nil
}
func (c fakeCatalog) NodeAddress(string) (string, bool)   { return "", false }
func (c fakeCatalog) Observe(string, time.Duration, bool) {}
func (c fakeCatalog) ObserveCall(time.Duration, bool)     {}

type noPeers struct{}

func (noPeers) OpenStream(context.Context, string, string) (PeerStream, error) {
	return nil, status.Error(codes.Unavailable, "no peers in this test")
}

func (noPeers) Invoke(context.Context, string, string, proto.Message, proto.Message) error {
	return status.Error(codes.Unavailable, "no peers in this test")
}

func newPlane(t *testing.T, l *fakeLocal, agent string) *Plane {
	t.Helper()
	r, err := routing.NewRouter(routing.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{LocalNode: "n1", MaxPayload: 1 << 20, CallTimeout: 10 * time.Second, MaxVoteWait: time.Minute,
		Local: l, Catalog: fakeCatalog{agent: agent, node: "n1"}, Router: r, Peers: noPeers{}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var me = hub.Owner{PID: 10, UID: 1000}

// A handler's own call inherits its parent's chain, hops and (earlier)
// deadline; the router computes the attempt once and the delivery carries
// exactly that: chain without the callee, hops+1, the attempt's deadline.
func TestCallInheritsAndCarriesTheAttempt(t *testing.T) {
	parentDeadline := time.Now().Add(2 * time.Second)
	l := &fakeLocal{owners: map[string]hub.Owner{"n1/a": me},
		parents: map[string]hub.Parent{"call-1": {AgentID: "n1/a", CallContext: hub.CallContext{Chain: []string{"n0/root"}, Hops: 1, Deadline: parentDeadline}}}}
	p := newPlane(t, l, "n1/b")
	resp, err := p.Call(context.Background(), me, &meshnodev1.CallRequest{Capability: "cap", Payload: []byte("hi"), ParentCallId: "call-1",
		Deadline: timestamppb.New(time.Now().Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetPayload()) != "hi" || resp.GetAgentId() != "n1/b" || resp.GetAttempts() != 1 {
		t.Fatalf("answer %+v", resp)
	}
	got := l.delivered[0]
	if want := []string{"n0/root", "n1/a"}; !slices.Equal(got.d.GetChain(), want) || !slices.Equal(got.cc.Chain, want) {
		t.Fatalf("chain %v / %v, want %v", got.d.GetChain(), got.cc.Chain, want)
	}
	if got.cc.Hops != 2 || got.d.GetCallerAgentId() != "n1/a" || got.d.GetAttempt() != 1 {
		t.Fatalf("hops %d caller %q attempt %d", got.cc.Hops, got.d.GetCallerAgentId(), got.d.GetAttempt())
	}
	if !got.cc.Deadline.Before(parentDeadline) || !got.d.GetDeadline().AsTime().Equal(got.cc.Deadline) {
		t.Fatalf("deadline %v (delivery %v), want the attempt's, before the parent's %v", got.cc.Deadline, got.d.GetDeadline().AsTime(), parentDeadline)
	}
}

func TestCallRefusals(t *testing.T) {
	l := &fakeLocal{owners: map[string]hub.Owner{"n1/a": me}, parents: map[string]hub.Parent{"call-1": {AgentID: "n1/a"}}}
	p := newPlane(t, l, "n1/b")
	other := hub.Owner{PID: 11, UID: 1001}
	cases := []struct {
		name string
		req  *meshnodev1.CallRequest
		want codes.Code
	}{
		{"no capability", &meshnodev1.CallRequest{}, codes.InvalidArgument},
		{"payload too big", &meshnodev1.CallRequest{Capability: "cap", Payload: make([]byte, 1<<20+1)}, codes.InvalidArgument},
		{"unknown parent", &meshnodev1.CallRequest{Capability: "cap", ParentCallId: "nope"}, codes.FailedPrecondition},
		{"deadline passed", &meshnodev1.CallRequest{Capability: "cap", Deadline: timestamppb.New(time.Now().Add(-time.Second))}, codes.DeadlineExceeded},
	}
	for _, tc := range cases {
		if _, err := p.Call(context.Background(), me, tc.req); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	// Another process may not call as n1/a, nor continue n1/a's call.
	for _, req := range []*meshnodev1.CallRequest{{Capability: "cap", CallerAgentId: "a"}, {Capability: "cap", ParentCallId: "call-1"}} {
		if _, err := p.Call(context.Background(), other, req); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%v as another process: %v, want PermissionDenied", req, err)
		}
	}
	if len(l.delivered) != 0 {
		t.Fatalf("%d refused calls were delivered", len(l.delivered))
	}
}

// The callee half checks a forwarded call once before the agent sees it.
func TestReceiveChecksBeforeDelivering(t *testing.T) {
	l := &fakeLocal{}
	p := newPlane(t, l, "n1/b")
	later := timestamppb.New(time.Now().Add(time.Minute))
	fwd := func(target string, chain []string, hops uint32) *meshnodev1.ForwardCallRequest {
		return &meshnodev1.ForwardCallRequest{TargetAgentId: target, Delivery: &meshnodev1.Delivery{Capability: "cap", Payload: []byte("x")},
			Routing: &meshnodev1.RoutingMetadata{Chain: chain, Hops: hops, Deadline: later}}
	}
	refused := []struct {
		name string
		req  *meshnodev1.ForwardCallRequest
		want codes.Code
	}{
		{"another node's agent", fwd("n2/b", []string{"n2/b"}, 1), codes.NotFound},
		{"chain not ending with the target", fwd("n1/b", []string{"n0/a"}, 1), codes.InvalidArgument},
		{"cycle", fwd("n1/b", []string{"n1/b", "n0/a", "n1/b"}, 2), codes.FailedPrecondition},
		{"hop limit", fwd("n1/b", []string{"n1/b"}, 9), codes.FailedPrecondition},
		{"no delivery", &meshnodev1.ForwardCallRequest{TargetAgentId: "n1/b", Routing: &meshnodev1.RoutingMetadata{Chain: []string{"n1/b"}, Deadline: later}}, codes.InvalidArgument},
	}
	for _, tc := range refused {
		if _, err := p.Receive(context.Background(), "n0", tc.req); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	if len(l.delivered) != 0 {
		t.Fatalf("refused calls were delivered: %+v", l.delivered)
	}
	resp, err := p.Receive(context.Background(), "n0", fwd("n1/b", []string{"n0/a", "n1/b"}, 1))
	if err != nil || string(resp.GetOk().GetPayload()) != "x" {
		t.Fatalf("good call: %v %v", resp, err)
	}
	if got := l.delivered[0].cc; !slices.Equal(got.Chain, []string{"n0/a"}) || got.Hops != 1 {
		t.Fatalf("delivered with %+v", got)
	}
}

// A peer cannot hold a vote waiter on this node longer than MaxVoteWait,
// whatever deadline its proposal names.
func TestReceiveVoteCapsTheWait(t *testing.T) {
	l := &fakeLocal{}
	p := newPlane(t, l, "n1/b")
	far := timestamppb.New(time.Now().Add(100 * 365 * 24 * time.Hour))
	if _, err := p.ReceiveVote(context.Background(), "n0", &meshnodev1.ForwardVoteRequest{VoterAgentId: "n1/v", Proposal: &meshnodev1.Proposal{Id: "p", Deadline: far}}); err != nil {
		t.Fatal(err)
	}
	d, ok := l.voteCtx.Deadline()
	if !ok || time.Until(d) > time.Minute {
		t.Fatalf("vote wait deadline %v, want at most a minute away", d)
	}
	if _, err := p.ReceiveVote(context.Background(), "n0", &meshnodev1.ForwardVoteRequest{VoterAgentId: "n2/v"}); status.Code(err) != codes.NotFound {
		t.Fatalf("vote for another node's agent: %v", err)
	}
}

// A peer node speaks only for its own agents: a forwarded call whose caller
// is on another node is refused and counted, and the handler sees the caller
// this node verified, not the delivery's caller_agent_id.
func TestReceiveVerifiesTheCallerNode(t *testing.T) {
	l := &fakeLocal{}
	p := newPlane(t, l, "n1/b")
	var refusals []Refusal
	p.cfg.Observer = refusalRecorder{&refusals}
	later := timestamppb.New(time.Now().Add(time.Minute))
	fwd := func(claimed string, chain ...string) *meshnodev1.ForwardCallRequest {
		return &meshnodev1.ForwardCallRequest{TargetAgentId: "n1/b", Delivery: &meshnodev1.Delivery{Capability: "cap", CallerAgentId: claimed, Chain: []string{"n9/forged"}},
			Routing: &meshnodev1.RoutingMetadata{Chain: append(chain, "n1/b"), Hops: uint32(len(chain)), Deadline: later}}
	}
	for _, tc := range []struct {
		name string
		req  *meshnodev1.ForwardCallRequest
	}{
		{"caller on another node", fwd("n2/a", "n2/a")},
		{"caller with no node part", fwd("", "a")},
		{"delivery caller disagrees with the chain", fwd("n2/a", "n0/a")},
		{"delivery caller on a call no agent made", fwd("n0/a")},
	} {
		_, err := p.Receive(context.Background(), "n0", tc.req)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "n0") {
			t.Errorf("%s: %v, want PermissionDenied naming n0", tc.name, err)
		}
	}
	if len(l.delivered) != 0 || len(refusals) != 4 || refusals[0] != RefusedCallerIdentity {
		t.Fatalf("delivered %d, refusals %v", len(l.delivered), refusals)
	}
	// Earlier entries on other nodes are the previous hop's word; the
	// caller must be the forwarding node's own agent.
	if _, err := p.Receive(context.Background(), "n0", fwd("", "n5/x", "n0/a")); err != nil {
		t.Fatal(err)
	}
	d := l.delivered[0].d
	if d.GetCallerAgentId() != "n0/a" || !slices.Equal(d.GetChain(), []string{"n5/x", "n0/a"}) {
		t.Fatalf("handler sees caller %q chain %v, want the verified n0/a", d.GetCallerAgentId(), d.GetChain())
	}
}

type refusalRecorder struct{ got *[]Refusal }

func (refusalRecorder) CallMade(CallEvent)   {}
func (refusalRecorder) CallServed(CallEvent) {}
func (refusalRecorder) Serving(string, int)  {}
func (r refusalRecorder) Refused(x Refusal)  { *r.got = append(*r.got, x) }
