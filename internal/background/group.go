package background

import (
	"context"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

// Group is a set of goroutines that end together. The zero value is not
// usable; use New.
type Group struct {
	clock  clock.Clock
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// New returns a running Group whose Every loops read c (nil: the system
// clock).
func New(c clock.Clock) *Group {
	ctx, cancel := context.WithCancel(context.Background())
	return &Group{clock: clock.OrSystem(c), ctx: ctx, cancel: cancel}
}

// Go runs f in its own goroutine until Stop; f must return when its context
// is done. After Stop, Go runs nothing: a callback that fires while its
// component stops must not start work the stop would not wait for.
func (g *Group) Go(f func(ctx context.Context)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f(g.ctx)
	}()
}

// Every runs f once per interval, the first time one interval from now,
// until Stop. A slow f delays the next run; runs never overlap.
func (g *Group) Every(interval time.Duration, f func(ctx context.Context)) {
	g.Go(func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case <-g.clock.After(interval):
				f(ctx)
			}
		}
	})
}

// Stop cancels every loop's context and waits for all of them to return.
// It is safe to call more than once.
func (g *Group) Stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}
