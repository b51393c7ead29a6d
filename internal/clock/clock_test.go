package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFakeAfterFiresWhenAdvancedPastItsDeadline(t *testing.T) {
	f := NewFake(start)
	late, early := f.After(2*time.Second), f.After(time.Second)
	if f.Waiters() != 2 {
		t.Fatalf("%d waiters, want 2", f.Waiters())
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-early:
		t.Fatal("After(1s) fired at +999ms")
	default:
	}
	f.Advance(time.Millisecond)
	if got := <-early; !got.Equal(start.Add(time.Second)) {
		t.Fatalf("After(1s) received %v", got)
	}
	select {
	case <-late:
		t.Fatal("After(2s) fired at +1s")
	default:
	}
	f.Set(start.Add(time.Hour))
	<-late
	if f.Waiters() != 0 || !f.Now().Equal(start.Add(time.Hour)) {
		t.Fatalf("after Set: %d waiters, now %v", f.Waiters(), f.Now())
	}
	select {
	case <-f.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
}

func TestFakeSleep(t *testing.T) {
	f := NewFake(start)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Sleep(ctx, time.Minute) }()
	if err := f.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Minute)
	if err := <-done; err != nil {
		t.Fatalf("Sleep: %v", err)
	}

	cctx, ccancel := context.WithCancel(ctx)
	go func() { done <- f.Sleep(cctx, time.Minute) }()
	if err := f.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	ccancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Sleep: %v", err)
	}
	if f.Waiters() != 0 {
		t.Fatalf("a cancelled Sleep is still waiting (%d waiters)", f.Waiters())
	}
	if err := f.Sleep(ctx, 0); err != nil {
		t.Fatalf("Sleep(0): %v", err)
	}
}

func TestFakeBlockUntilEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := NewFake(start).BlockUntil(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("BlockUntil on a done context: %v", err)
	}
}

func TestSystem(t *testing.T) {
	var c Clock = System{}
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Fatalf("System.Now off by %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("System.Sleep on a done context: %v", err)
	}
	if err := c.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	<-c.After(time.Millisecond)
	if OrSystem(nil) != (System{}) {
		t.Fatal("OrSystem(nil) is not System")
	}
	f := NewFake(start)
	if OrSystem(f) != f {
		t.Fatal("OrSystem replaced a clock")
	}
}
