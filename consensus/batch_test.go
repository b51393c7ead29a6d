package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// gatedProposer records each proposal and holds it until released.
type gatedProposer struct {
	mu      sync.Mutex
	batches [][]string
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGatedProposer() *gatedProposer {
	return &gatedProposer{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gatedProposer) open() { g.once.Do(func() { close(g.release) }) }

// startBatcher returns a batcher over g that is closed, after g is opened,
// when the test ends (a failed test must not leave proposals hanging).
func startBatcher(t *testing.T, g *gatedProposer, maxInflight int) *batcher {
	b := newBatcher(g.propose, 16, maxInflight)
	t.Cleanup(func() {
		g.open()
		b.close()
	})
	return b
}

func (g *gatedProposer) propose(cmds []*meshnodev1.Command) ([]*meshnodev1.CommandResult, error) {
	var keys []string
	var out []*meshnodev1.CommandResult
	for _, c := range cmds {
		keys = append(keys, c.GetIdempotencyKey())
		out = append(out, &meshnodev1.CommandResult{Status: statusOK, Index: uint64(len(keys))})
	}
	g.mu.Lock()
	g.batches = append(g.batches, keys)
	g.mu.Unlock()
	g.started <- struct{}{}
	<-g.release
	return out, nil
}

func (g *gatedProposer) seen() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]string(nil), g.batches...)
}

func keyed(k string) []*meshnodev1.Command {
	return []*meshnodev1.Command{{IdempotencyKey: k}}
}

func TestBatcherProposesALoneWriteAtOnce(t *testing.T) {
	g := newGatedProposer()
	g.open()
	b := startBatcher(t, g, 1)
	for i := range 3 {
		res, err := b.submit(context.Background(), keyed(fmt.Sprint(i)))
		if err != nil || len(res) != 1 {
			t.Fatalf("write %d: %v, %d results", i, err, len(res))
		}
	}
	if got := g.seen(); len(got) != 3 {
		t.Fatalf("sequential writes went out as %v, want three proposals of one", got)
	}
}

func TestBatcherGroupsWritesQueuedBehindAProposal(t *testing.T) {
	g := newGatedProposer()
	b := startBatcher(t, g, 1)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	submit := func(k string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := b.submit(context.Background(), keyed(k))
			if err == nil && (len(res) != 1 || res[0].GetStatus() != statusOK) {
				err = fmt.Errorf("write %s: results %v", k, res)
			}
			errs <- err
		}()
	}
	submit("first")
	<-g.started // the only slot is taken
	for i := range 5 {
		submit(fmt.Sprint("queued-", i))
	}
	// Let the five reach the queue before the slot frees.
	waitUntil(t, func() bool { return b.queued.Load() == 5 })
	g.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := g.seen()
	if len(got) != 2 || len(got[0]) != 1 || len(got[1]) != 5 {
		t.Fatalf("proposals %v, want [first] then the five queued writes as one", got)
	}
}

func TestBatcherDropsAWriteWhoseContextEndedInTheQueue(t *testing.T) {
	g := newGatedProposer()
	b := startBatcher(t, g, 1)
	go b.submit(context.Background(), keyed("first"))
	<-g.started
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.submit(ctx, keyed("cancelled"))
		done <- err
	}()
	waitUntil(t, func() bool { return b.queued.Load() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write returned %v, want context.Canceled", err)
	}
	g.open()
	res, err := b.submit(context.Background(), keyed("after"))
	if err != nil || len(res) != 1 {
		t.Fatalf("write after the cancelled one: %v", err)
	}
	for _, batch := range g.seen() {
		for _, k := range batch {
			if k == "cancelled" {
				t.Fatalf("the cancelled write was proposed: %v", g.seen())
			}
		}
	}
}

func TestBatcherRefusesWritesOnceClosed(t *testing.T) {
	g := newGatedProposer()
	g.open()
	b := newBatcher(g.propose, 16, 1)
	b.close()
	if _, err := b.submit(context.Background(), keyed("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close returned %v, want ErrClosed", err)
	}
	if got := g.seen(); len(got) != 0 {
		t.Fatalf("a write after close was proposed: %v", got)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
