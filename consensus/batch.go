package consensus

import (
	"context"
	"sync"
	"sync/atomic"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// proposeFunc commits commands as one unit (one log entry, or one forwarded
// request) and returns one result per command.
type proposeFunc func(cmds []*meshnodev1.Command) ([]*meshnodev1.CommandResult, error)

// batcher groups concurrent writes. While maxInflight proposals are
// outstanding, new writes queue; the next proposal takes everything queued
// (up to maxBatch commands). So batches stay small when load is light and
// grow with concurrency, and one fsync covers many writes.
type batcher struct {
	in          chan *pendingWrite
	propose     proposeFunc
	maxBatch    int
	slots       chan struct{}
	stop        chan struct{}
	wg          sync.WaitGroup
	inflightWG  sync.WaitGroup
	onceStopped sync.Once
	// proposals and commands count what was proposed (observability: their
	// ratio is the mean batch size).
	proposals, commands atomic.Uint64
}

type pendingWrite struct {
	ctx  context.Context
	cmds []*meshnodev1.Command
	done chan writeResult
}

type writeResult struct {
	results []*meshnodev1.CommandResult
	err     error
}

func newBatcher(propose proposeFunc, maxBatch, maxInflight int) *batcher {
	b := &batcher{
		in:       make(chan *pendingWrite, maxBatch),
		propose:  propose,
		maxBatch: maxBatch,
		slots:    make(chan struct{}, maxInflight),
		stop:     make(chan struct{}),
	}
	b.wg.Add(1)
	go b.loop()
	return b
}

// submit queues cmds (committed together, in order) and waits for their
// results. A context that ends before the proposal leaves the write
// unapplied; one that ends after it leaves the outcome unknown (the retry
// with the same idempotency keys settles it).
func (b *batcher) submit(ctx context.Context, cmds []*meshnodev1.Command) ([]*meshnodev1.CommandResult, error) {
	p := &pendingWrite{ctx: ctx, cmds: cmds, done: make(chan writeResult, 1)}
	select {
	case b.in <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.stop:
		return nil, ErrClosed
	}
	select {
	case r := <-p.done:
		return r.results, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *batcher) close() {
	b.onceStopped.Do(func() { close(b.stop) })
	b.wg.Wait()
	b.inflightWG.Wait()
}

func (b *batcher) loop() {
	defer b.wg.Done()
	var carry *pendingWrite // did not fit the previous batch
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-b.in:
			case <-b.stop:
				b.failQueued()
				return
			}
		}
		// Wait for a slot before draining: the longer we wait, the bigger
		// the batch.
		select {
		case b.slots <- struct{}{}:
		case <-b.stop:
			first.done <- writeResult{err: ErrClosed}
			b.failQueued()
			return
		}
		batch := []*pendingWrite{first}
		n := len(first.cmds)
	drain:
		for n < b.maxBatch {
			select {
			case p := <-b.in:
				if n+len(p.cmds) > b.maxBatch {
					carry = p
					break drain
				}
				batch = append(batch, p)
				n += len(p.cmds)
			default:
				break drain
			}
		}
		b.inflightWG.Add(1)
		go b.run(batch)
	}
}

func (b *batcher) failQueued() {
	for {
		select {
		case p := <-b.in:
			p.done <- writeResult{err: ErrClosed}
		default:
			return
		}
	}
}

func (b *batcher) run(batch []*pendingWrite) {
	defer b.inflightWG.Done()
	defer func() { <-b.slots }()
	live := batch[:0]
	var cmds []*meshnodev1.Command
	for _, p := range batch {
		if p.ctx.Err() != nil {
			p.done <- writeResult{err: p.ctx.Err()}
			continue
		}
		live = append(live, p)
		cmds = append(cmds, p.cmds...)
	}
	if len(live) == 0 {
		return
	}
	b.proposals.Add(1)
	b.commands.Add(uint64(len(cmds)))
	results, err := b.propose(cmds)
	for _, p := range live {
		if err != nil {
			p.done <- writeResult{err: err}
			continue
		}
		p.done <- writeResult{results: results[:len(p.cmds)]}
		results = results[len(p.cmds):]
	}
}
