package background

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

// TestStopWaitsForEveryLoop: Stop returns only after each loop has seen its
// context end and returned.
func TestStopWaitsForEveryLoop(t *testing.T) {
	g := New(nil)
	var running, returned atomic.Int32
	for range 5 {
		g.Go(func(ctx context.Context) {
			running.Add(1)
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond)
			returned.Add(1)
		})
	}
	for running.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	g.Stop()
	if got := returned.Load(); got != 5 {
		t.Fatalf("Stop returned with %d of 5 loops finished", got)
	}
	g.Stop() // a second Stop is a no-op
}

// TestGoAfterStopRunsNothing: work started by a callback during or after
// the stop is not run, so nothing escapes the wait.
func TestGoAfterStopRunsNothing(t *testing.T) {
	g := New(nil)
	g.Stop()
	var ran atomic.Bool
	g.Go(func(context.Context) { ran.Store(true) })
	g.Every(time.Millisecond, func(context.Context) { ran.Store(true) })
	time.Sleep(20 * time.Millisecond)
	if ran.Load() {
		t.Fatal("a loop started after Stop ran")
	}
}

// TestEveryRunsOnTheClock: with a fake clock, f runs once per interval and
// not before the first interval has passed; Stop ends the loop.
func TestEveryRunsOnTheClock(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := New(fc)
	runs := make(chan struct{}, 10)
	g.Every(time.Second, func(context.Context) { runs <- struct{}{} })
	for i := range 3 {
		if err := fc.BlockUntil(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		select {
		case <-runs:
			t.Fatalf("run %d came before its interval passed", i)
		default:
		}
		fc.Advance(time.Second)
		select {
		case <-runs:
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d did not come after the interval", i)
		}
	}
	g.Stop()
	fc.Advance(time.Second)
	select {
	case <-runs:
		t.Fatal("a run came after Stop")
	case <-time.After(20 * time.Millisecond):
	}
}
