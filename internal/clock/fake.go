package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a Clock whose time moves only when the test calls Advance or
// Set. After channels and Sleep calls wait for the fake time to reach their
// deadline; Waiters and BlockUntil let a test know that the code under test
// is waiting before it moves time, without sleeping.
type Fake struct {
	mu      sync.Mutex
	cond    *sync.Cond // signalled when waiters change
	now     time.Time
	waiters []*fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

var _ Clock = (*Fake)(nil)

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake {
	f := &Fake{now: start}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once it has advanced
// by d; at once when d <= 0.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, &fakeWaiter{at: f.now.Add(d), ch: ch})
	f.cond.Broadcast()
	return ch
}

// Sleep waits until the fake time has advanced by d, or ctx is done.
func (f *Fake) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	ch := f.After(d)
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		f.remove(ch)
		return ctx.Err()
	}
}

// Advance moves the fake time forward by d and wakes every waiter whose
// deadline it reached, earliest first.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLocked(f.now.Add(d))
}

// Set moves the fake time to t (backwards too; waiters then wait longer)
// and wakes every waiter whose deadline it reached.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLocked(t)
}

func (f *Fake) setLocked(t time.Time) {
	f.now = t
	sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t // buffered, and sent to once
	}
	clear(f.waiters[len(kept):])
	f.waiters = kept
	f.cond.Broadcast()
}

// Waiters is the number of After channels and Sleep calls still waiting.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// BlockUntil waits until at least n After channels or Sleep calls are
// waiting on the fake time, or ctx is done.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.cond.Broadcast()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.waiters) < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.cond.Wait()
	}
	return nil
}

func (f *Fake) remove(ch <-chan time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, w := range f.waiters {
		if w.ch == ch {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			f.cond.Broadcast()
			return
		}
	}
}
