package hub

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestReaperAndAdoption: an agent adopted at start and one whose stream
// broke are deregistered once the grace has passed, not before; one that
// came back is left alone; a failed deregistration is retried.
func TestReaperAndAdoption(t *testing.T) {
	clock := newFakeClock()
	const grace, tick = 30 * time.Second, time.Second
	var mu sync.Mutex
	failOnce := map[string]bool{"n1/orphan": true}
	deregistered := make(chan string, 10)
	listed := make(chan struct{}, 2)
	h := newTestHub(t, Config{
		Clock: clock, DisconnectGrace: grace, ReapInterval: tick, AdoptRetry: 500 * time.Millisecond,
		Registered: func(context.Context) ([]string, error) {
			listed <- struct{}{}
			if len(listed) == 1 {
				return nil, errors.New("replica not ready")
			}
			return []string{"n1/orphan", "n1/back", "n1/lost"}, nil
		},
		Deregister: func(_ context.Context, id string) error {
			mu.Lock()
			defer mu.Unlock()
			if failOnce[id] {
				failOnce[id] = false
				return errors.New("no leader")
			}
			deregistered <- id
			return nil
		},
	})
	// n1/lost's process registered it again and its stream broke.
	lost := serve(t, h, alice, "lost", 0)
	h.Start()
	clock.waitAsked(t, 500*time.Millisecond) // the first listing failed
	clock.Advance(500 * time.Millisecond)
	clock.waitAsked(t, tick) // adopted; the reaper waits
	lost.stop(t)
	back := serve(t, h, bob, "back", 0) // n1/back's process came back
	if _, ok := h.Load("n1/orphan"); !ok {
		t.Fatal("n1/orphan was not adopted")
	}

	reapAfter := func(d time.Duration) []string {
		t.Helper()
		clock.Advance(d)
		clock.waitAsked(t, tick) // the reap has run and the loop waits again
		got := drain(deregistered)
		slices.Sort(got)
		return got
	}
	if got := reapAfter(grace - tick); len(got) != 0 {
		t.Fatalf("deregistered %v within the grace", got)
	}
	// n1/orphan's first deregistration fails, and is retried at the next tick.
	if got := reapAfter(2 * tick); !slices.Equal(got, []string{"n1/lost"}) {
		t.Fatalf("after the grace: deregistered %v, want n1/lost (n1/orphan's write failed)", got)
	}
	if got := reapAfter(tick); !slices.Equal(got, []string{"n1/orphan"}) {
		t.Fatalf("next reap: deregistered %v, want n1/orphan", got)
	}
	for _, id := range []string{"n1/orphan", "n1/lost"} {
		if _, ok := h.Load(id); ok {
			t.Errorf("%s is still in the table after its deregistration", id)
		}
	}
	if !h.Serving(back.id) {
		t.Error("n1/back was reaped while serving")
	}
	h.Close() // stops the loop: Close waits for it
	clock.Advance(time.Hour)
	if got := drain(deregistered); len(got) != 0 {
		t.Errorf("deregistered %v after Close", got)
	}
}

func drain(ch chan string) []string {
	var got []string
	for len(ch) > 0 {
		got = append(got, <-ch)
	}
	return got
}

func TestAdoptLeavesKnownAgents(t *testing.T) {
	h := newTestHub(t, Config{})
	a := serve(t, h, alice, "a", 0)
	h.Adopt(a.id)
	if err := h.Owned(a.id, alice); err != nil || !h.Serving(a.id) {
		t.Errorf("adopting a known agent changed it: %v, serving %v", err, h.Serving(a.id))
	}
	h.Adopt("n1/orphan")
	if err := h.Owned("n1/orphan", alice); !errors.Is(err, ErrNotOwner) {
		t.Errorf("an adopted agent is owned by nobody until registered again: %v", err)
	}
	if err := h.Claim("n1/orphan", alice); err != nil {
		t.Errorf("claiming an adopted agent: %v", err)
	}
}

func TestCloseBeforeStart(t *testing.T) {
	h := newTestHub(t, Config{Registered: func(context.Context) ([]string, error) {
		t.Error("a closed hub adopted")
		return nil, nil
	}})
	h.Close()
	h.Start()
	h.Close()
}
