package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent/agenttest"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronisation
	}
}

// checkAttemptsLoggedOnce checks that each reconnect attempt 1..n was logged
// exactly once.
func checkAttemptsLoggedOnce(t *testing.T, logs *logBuffer) {
	t.Helper()
	n := logs.count("reconnecting")
	if n == 0 {
		t.Fatalf("no reconnect attempt logged; log:\n%s", logs)
	}
	for i := 1; i <= n; i++ {
		if c := logs.count(fmt.Sprintf("attempt=%d ", i)); c != 1 {
			t.Errorf("attempt %d logged %d times, want once; log:\n%s", i, c, logs)
		}
	}
}

func TestReconnectsAndReregistersAfterNodeRestart(t *testing.T) {
	node := agenttest.NewNode(t)
	a, logs := testAgent(t, node, "phoenix")
	started, handlerErr := make(chan struct{}), make(chan error, 1)
	a.Handle(Capability{Name: "wait"}, func(ctx context.Context, r *Request) (*Response, error) {
		close(started)
		<-ctx.Done()
		handlerErr <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	a.Handle(Capability{Name: "echo"}, echo)
	serve(t, a)

	delivered := make(chan error, 1)
	go func() {
		_, err := node.Deliver(context.Background(), a.ID(), &meshnodev1.Delivery{Capability: "wait"})
		delivered <- err
	}()
	<-started
	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-delivered; err == nil {
		t.Error("the call in flight during the restart succeeded, want a failure")
	}
	select {
	case err := <-handlerErr:
		if !errors.Is(err, ErrDisconnected) {
			t.Errorf("handler ctx ended with cause %v, want ErrDisconnected when the stream broke", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler ctx not cancelled after the node went away")
	}

	if err := node.WaitReady(timeout(t, 10*time.Second), "phoenix"); err != nil {
		t.Fatal(err)
	}
	if n := len(node.Registrations()); n != 2 {
		t.Errorf("%d registrations, want 2 (initial and after the restart)", n)
	}
	res, err := dial(t, node).Call(timeout(t, 10*time.Second), "echo", []byte("back"))
	if err != nil || string(res.Payload) != "BACK" {
		t.Fatalf("call after restart = %v, %v; want BACK", res, err)
	}
	checkAttemptsLoggedOnce(t, logs)
}

func TestServeWaitsForANodeThatStartsLater(t *testing.T) {
	node := agenttest.NewNode(t)
	node.Stop()
	a, logs := testAgent(t, node, "early")
	a.Handle(Capability{Name: "echo"}, echo)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	}()
	waitFor(t, 10*time.Second, "three failed attempts", func() bool { return logs.count("reconnecting") >= 3 })
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.Up(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	checkAttemptsLoggedOnce(t, logs)
}

func TestWatchStreamsChangesAndResumesAfterRestart(t *testing.T) {
	node := agenttest.NewNode(t)
	first, _ := testAgent(t, node, "first")
	first.Handle(Capability{Name: "watched"}, echo)
	if err := first.Register(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	c, err := Dial(context.Background(), node.Socket,
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
		WithBackoff(Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Jitter: -1}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	type event struct {
		typ meshnodev1.WatchEventType
		id  string
	}
	events := make(chan event)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range c.Watch(ctx, "watched") {
			if err != nil {
				t.Errorf("watch: %v", err)
				return
			}
			select {
			case events <- event{ev.GetType(), ev.GetAgent().GetId()}:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()
	next := func() event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event within 10s")
			return event{}
		}
	}
	want := []event{
		{meshnodev1.WatchEventType_WATCH_EVENT_TYPE_UPSERT, "test-node/first"},
		{meshnodev1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT_DONE, ""},
	}
	for _, w := range want {
		if got := next(); got != w {
			t.Fatalf("event %v, want %v", got, w)
		}
	}

	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	second, _ := testAgent(t, node, "second")
	second.Handle(Capability{Name: "watched"}, echo)
	if err := second.Register(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Resumed after the last index seen: "first" is not replayed.
	if got, w := next(), (event{meshnodev1.WatchEventType_WATCH_EVENT_TYPE_UPSERT, "test-node/second"}); got != w {
		t.Fatalf("after restart: event %v, want %v", got, w)
	}
	if err := second.Deregister(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, w := next(), (event{meshnodev1.WatchEventType_WATCH_EVENT_TYPE_DELETE, "test-node/second"}); got != w {
		t.Fatalf("event %v, want %v", got, w)
	}
	if logs.count("meshnode watch broken; reconnecting") == 0 {
		t.Errorf("the watch reconnect was not logged; log:\n%s", logs)
	}
}
