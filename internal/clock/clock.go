package clock

import (
	"context"
	"time"
)

// Clock is a source of time. Implementations are safe for concurrent use.
// It is as small as its users need: reading the time, one timeout in a
// select, and a wait that ends early with its context.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives the time once d has passed
	// (at once when d <= 0), like time.After.
	After(d time.Duration) <-chan time.Time
	// Sleep waits d, or until ctx is done and then returns ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// System is the wall clock. Its zero value is ready to use.
type System struct{}

var _ Clock = System{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (System) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Sleep waits d with a real timer, or until ctx is done.
func (System) Sleep(ctx context.Context, d time.Duration) error {
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

// OrSystem returns c, or System when c is nil: the default of every
// Config's Clock field.
func OrSystem(c Clock) Clock {
	if c == nil {
		return System{}
	}
	return c
}
