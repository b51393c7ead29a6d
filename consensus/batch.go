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
	// closeMu is held for reading while a write enters (queue or direct
	// proposal) and for writing while close sets closed.
	closeMu sync.RWMutex
	closed  bool
	// proposals and commands count what was proposed (observability: their
	// ratio is the mean batch size).
	proposals, commands atomic.Uint64
	// queued counts writes waiting for a proposal.
	queued atomic.Int64
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
	if err := b.enqueue(p); err != nil {
		return nil, err
	}
	select {
	case r := <-p.done:
		return r.results, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// enqueue hands p to a proposal. The read lock keeps close from finishing
// while p is on its way into the queue: a write that got in after the loop
// stopped would wait forever.
func (b *batcher) enqueue(p *pendingWrite) error {
	b.closeMu.RLock()
	defer b.closeMu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	if b.proposeAlone(p) {
		return nil
	}
	b.queued.Add(1)
	select {
	case b.in <- p:
		return nil
	case <-p.ctx.Done():
		b.queued.Add(-1)
		return p.ctx.Err()
	}
}

// proposeAlone starts p as a batch of its own when nothing is queued and a
// proposal slot is free: there is nothing to batch it with, and skipping
// the loop takes a goroutine hand-off off every lone write's commit path.
// It reports false, leaving p to the queue, otherwise.
func (b *batcher) proposeAlone(p *pendingWrite) bool {
	if len(b.in) > 0 {
		return false
	}
	select {
	case b.slots <- struct{}{}:
	default:
		return false
	}
	b.inflightWG.Add(1)
	go b.run([]*pendingWrite{p})
	return true
}

// close fails queued writes and waits for proposals in flight. Writes
// already on their way into the queue finish getting there first (the loop
// still drains it), so none is left behind.
func (b *batcher) close() {
	b.closeMu.Lock()
	b.closed = true
	b.closeMu.Unlock()
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
		b.queued.Add(-1)
		n := len(first.cmds)
	drain:
		for n < b.maxBatch {
			select {
			case p := <-b.in:
				if n+len(p.cmds) > b.maxBatch {
					carry = p
					break drain
				}
				b.queued.Add(-1)
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
