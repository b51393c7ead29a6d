package routing

import (
	"context"
	"time"
)

// Clock is the router's only source of time. Tests and the routing
// benchmarks inject a fake so that breaker timeouts, decay and budgets run in
// simulated time.
type Clock interface {
	Now() time.Time
}

// Sleeper is implemented by clocks that can also wait. The router waits for
// retry backoff through it when the Clock implements it, so a fake clock can
// advance instead of blocking; otherwise it uses a real timer.
type Sleeper interface {
	// Sleep waits d or until ctx is done, returning ctx.Err() in that case.
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep waits d with a real timer.
func (SystemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func sleep(ctx context.Context, c Clock, d time.Duration) error {
	if s, ok := c.(Sleeper); ok {
		return s.Sleep(ctx, d)
	}
	return SystemClock{}.Sleep(ctx, d)
}
