package routing

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// A calls B; B asks for a capability only A serves: refused, naming A -> B -> A.
func TestCycleRefused(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 41)
	a := cand("A", "n1")
	b := cand("B", "n2")
	b.Capability.Name = "cap.b"
	// Hop 1: A calls cap.b, routed to B.
	var outbound Metadata
	inv := InvokerFunc(func(_ context.Context, at Attempt) (bool, error) { outbound = at.Meta; return true, nil })
	if _, err := r.Route(context.Background(), Request{Capability: "cap.b", Meta: Metadata{Chain: []string{"A"}}}, []Candidate{b}, inv); err != nil {
		t.Fatal(err)
	}
	if strings.Join(outbound.Chain, ",") != "A,B" || outbound.Hops != 1 {
		t.Fatalf("outbound metadata %+v", outbound)
	}
	// The callee node accepts it.
	if err := CheckInbound(time.Now(), Metadata{Chain: outbound.Chain, Hops: outbound.Hops}, DefaultPolicy()); err != nil {
		t.Fatalf("CheckInbound: %v", err)
	}
	// Hop 2: B calls cap, which only A serves.
	called := false
	inv2 := InvokerFunc(func(context.Context, Attempt) (bool, error) { called = true; return true, nil })
	_, err := r.Route(context.Background(), Request{Capability: "cap", Meta: outbound}, []Candidate{a}, inv2)
	if called || status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrCycle) || !strings.Contains(err.Error(), "A -> B -> A") {
		t.Fatalf("cycle not refused: called=%v err=%v", called, err)
	}
	// Another agent serves cap too: the cycle is avoided by routing there.
	res, err := r.Route(context.Background(), Request{Capability: "cap", Meta: outbound}, []Candidate{a, cand("C", "n3")}, inv2)
	if err != nil || res.Agent.AgentID != "C" {
		t.Fatalf("did not route around the cycle: %+v %v", res, err)
	}
}

func TestCheckInboundRefusesCycleAndHops(t *testing.T) {
	now := time.Now()
	err := CheckInbound(now, Metadata{Chain: []string{"A", "B", "A"}, Hops: 2}, DefaultPolicy())
	if !errors.Is(err, ErrCycle) || !strings.Contains(err.Error(), "A -> B -> A") {
		t.Fatalf("inbound cycle: %v", err)
	}
	err = CheckInbound(now, Metadata{Chain: []string{"a", "b"}, Hops: 9}, DefaultPolicy())
	if !errors.Is(err, ErrHopLimit) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("inbound hops: %v", err)
	}
	err = CheckInbound(now, Metadata{Chain: []string{"a"}, Hops: 1, Deadline: now.Add(time.Millisecond)}, DefaultPolicy())
	if !errors.Is(err, ErrDeadline) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("inbound deadline: %v", err)
	}
}

func TestHopLimit(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 42)
	p := DefaultPolicy()
	chain := []string{"x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"}
	_, err := r.Route(context.Background(), Request{Capability: "cap", Policy: p, Meta: Metadata{Chain: chain, Hops: 8}}, cands(2), okInvoker)
	if !errors.Is(err, ErrHopLimit) || !strings.Contains(err.Error(), "limit is 8") {
		t.Fatalf("hop 9 allowed: %v", err)
	}
	if _, err := r.Route(context.Background(), Request{Capability: "cap", Policy: p, Meta: Metadata{Chain: chain[:7], Hops: 7}}, cands(2), okInvoker); err != nil {
		t.Fatalf("hop 8 refused: %v", err)
	}
}

// A chain of calls through several hops: the deadline each callee receives
// shrinks at every hop by at least the reserve plus the time spent.
func TestDeadlineShrinksEveryHop(t *testing.T) {
	clock := newFakeClock()
	r := newTestRouter(t, clock, 43)
	meta := Metadata{Chain: []string{"root"}, Deadline: clock.Now().Add(time.Second)}
	prev := meta.Deadline
	for hop := 1; hop <= 7; hop++ {
		var got Attempt
		inv := InvokerFunc(func(_ context.Context, a Attempt) (bool, error) { got = a; return true, nil })
		c := cand("agent"+string(rune('A'+hop)), "n1")
		if _, err := r.Route(context.Background(), Request{Capability: "cap", Meta: meta}, []Candidate{c}, inv); err != nil {
			t.Fatalf("hop %d: %v", hop, err)
		}
		reserve := DefaultDeadline().HopReserve
		if !got.Deadline.Before(prev) || prev.Sub(got.Deadline) < reserve || !got.Meta.Deadline.Equal(got.Deadline) {
			t.Fatalf("hop %d: deadline %v did not shrink by the %v reserve from %v", hop, got.Deadline, reserve, prev)
		}
		prev = got.Deadline
		meta = got.Meta
		clock.Advance(3 * time.Millisecond) // the callee's own work before it calls on
	}
}

func TestDeadlineFailsFast(t *testing.T) {
	clock := newFakeClock()
	r := newTestRouter(t, clock, 44)
	called := false
	inv := InvokerFunc(func(context.Context, Attempt) (bool, error) { called = true; return true, nil })
	_, err := r.Route(context.Background(), Request{Capability: "cap", Meta: Metadata{Deadline: clock.Now().Add(12 * time.Millisecond)}}, cands(2), inv)
	if called || status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, ErrDeadline) {
		t.Fatalf("called=%v err=%v", called, err)
	}
	// The caller's context deadline caps the metadata's.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	_, err = r.Route(ctx, Request{Capability: "cap", Meta: Metadata{Deadline: clock.Now().Add(time.Hour)}}, cands(2), inv)
	if called || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("ctx deadline ignored: called=%v err=%v", called, err)
	}
	// No deadline at all: the default timeout applies.
	var got Attempt
	inv = InvokerFunc(func(_ context.Context, a Attempt) (bool, error) { got = a; return true, nil })
	if _, err := r.Route(context.Background(), Request{Capability: "cap"}, cands(1), inv); err != nil {
		t.Fatal(err)
	}
	if want := clock.Now().Add(30*time.Second - 5*time.Millisecond); !got.Deadline.Equal(want) {
		t.Fatalf("default deadline %v, want %v", got.Deadline, want)
	}
}

func TestMetadataProtoRoundTrip(t *testing.T) {
	m := Metadata{Chain: []string{"a", "b"}, Hops: 2, Deadline: time.Unix(100, 5).UTC(), Attempt: 3, IdempotencyKey: "k",
		TraceContext: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	got, err := MetadataFromProto(m.ToProto())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Deadline.Equal(m.Deadline) || strings.Join(got.Chain, ",") != "a,b" || got.Hops != 2 || got.Attempt != 3 ||
		got.IdempotencyKey != "k" || got.TraceContext["traceparent"] != m.TraceContext["traceparent"] {
		t.Fatalf("round trip: %+v", got)
	}
	long := &meshnodev1.RoutingMetadata{Chain: make([]string, 100)}
	if _, err := MetadataFromProto(long); err == nil {
		t.Fatal("100-agent chain accepted")
	}
}

// FuzzMetadataFromProto decodes peer-supplied metadata bytes.
func FuzzMetadataFromProto(f *testing.F) {
	seed, _ := proto.Marshal(Metadata{Chain: []string{"a", "b"}, Hops: 1, Deadline: time.Unix(5, 0), TraceContext: map[string]string{"traceparent": "x"}}.ToProto())
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var pm meshnodev1.RoutingMetadata
		if proto.Unmarshal(b, &pm) != nil {
			return
		}
		m, err := MetadataFromProto(&pm)
		if err != nil {
			return
		}
		if len(m.Chain) > maxChain || m.Hops > maxChain {
			t.Fatalf("limits not enforced: %d %d", len(m.Chain), m.Hops)
		}
		m2, err := MetadataFromProto(m.ToProto())
		if err != nil || len(m2.Chain) != len(m.Chain) || !m2.Deadline.Equal(m.Deadline) {
			t.Fatalf("re-encode: %v", err)
		}
		_ = CheckInbound(time.Unix(0, 0), m, DefaultPolicy())
		_ = ExtractTraceContext(context.Background(), m.TraceContext)
	})
}
