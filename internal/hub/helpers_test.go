package hub

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// fakeClock moves only when a test advances it. asked hears every After,
// so a test knows a loop is waiting before it moves time.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	asked   chan time.Duration
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), asked: make(chan time.Duration, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	c.asked <- d
	return ch
}

// Advance moves time by d and fires every After that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// waitAsked waits until some loop calls After(d).
func (c *fakeClock) waitAsked(t *testing.T, d time.Duration) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-c.asked:
			if got == d {
				return
			}
		case <-timeout:
			t.Fatalf("nothing waited for %v on the clock", d)
		}
	}
}

const node = "n1"

var (
	alice = Owner{PID: 100, UID: 1000, GID: 1000}
	bob   = Owner{PID: 200, UID: 1001, GID: 1001}
)

// newTestHub builds a hub whose live processes are alice and bob, with
// cfg's callbacks.
func newTestHub(t *testing.T, cfg Config) *Hub {
	t.Helper()
	cfg.Node = node
	if cfg.ProcessAlive == nil {
		cfg.ProcessAlive = func(pid int32) bool { return pid == alice.PID || pid == bob.PID }
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// fakeAgent is an agent's side of a Serve stream.
type fakeAgent struct {
	id     string
	events chan *meshnodev1.ServeResponse
	cancel context.CancelFunc
	result chan error
}

// serve registers name for o and opens its Serve stream; it returns once
// the agent has heard ServeReady.
func serve(t *testing.T, h *Hub, o Owner, name string, maxInFlight uint32) *fakeAgent {
	t.Helper()
	id := h.AgentID(name)
	if err := h.Claim(id, o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &fakeAgent{id: id, events: make(chan *meshnodev1.ServeResponse, 16), cancel: cancel, result: make(chan error, 1)}
	go func() {
		a.result <- h.Serve(ctx, o, &meshnodev1.ServeRequest{AgentId: name, MaxInFlight: maxInFlight}, func(ev *meshnodev1.ServeResponse) error {
			a.events <- ev
			return nil
		})
	}()
	t.Cleanup(func() { a.stop(t) })
	if ev := a.next(t); ev.GetReady().GetAgentId() != id {
		t.Fatalf("first event %v, want ready for %s", ev, id)
	}
	return a
}

func (a *fakeAgent) next(t *testing.T) *meshnodev1.ServeResponse {
	t.Helper()
	select {
	case ev := <-a.events:
		return ev
	case err := <-a.result:
		t.Fatalf("agent %s: Serve returned %v", a.id, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s: no event", a.id)
	}
	return nil
}

// stop ends the stream from the agent's side and returns Serve's result.
func (a *fakeAgent) stop(t *testing.T) error {
	t.Helper()
	a.cancel()
	return a.wait(t)
}

// wait returns Serve's result once it has returned.
func (a *fakeAgent) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-a.result:
		a.result <- err // later calls see it too
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s: Serve did not return", a.id)
	}
	return nil
}

// wantErr checks an error's kind and gRPC code.
func wantErr(t *testing.T, what string, err, kind error, code codes.Code) {
	t.Helper()
	if kind == nil {
		if err != nil {
			t.Errorf("%s: %v, want success", what, err)
		}
		return
	}
	if !errors.Is(err, kind) || status.Code(err) != code || status.Convert(err).Message() == "" {
		t.Errorf("%s: %v (code %s), want %v with code %s", what, err, status.Code(err), kind, code)
	}
}

func timestampAt(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// Sleep waits for the fake time to move by d, or for ctx.
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-c.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
