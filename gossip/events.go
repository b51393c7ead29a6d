package gossip

import (
	"sync"
	"sync/atomic"
)

// hub fans events out to subscribers without ever blocking the caller:
// memberlist invokes our delegates with its own locks held. Each subscriber
// has a queue drained by its own goroutine. Membership events are always
// queued (their number is bounded by membership churn); load events beyond
// the subscriber's buffer are dropped and counted, since the next load event
// or a Load() call gives the current state anyway.
type hub struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	closed  bool
	buffer  int
	dropped *atomic.Uint64
	wg      sync.WaitGroup
}

type subscriber struct {
	mu      sync.Mutex
	queue   []Event
	loads   int // load events in queue
	wake    chan struct{}
	done    chan struct{}
	out     chan Event
	stopped sync.Once
}

func newHub(buffer int, dropped *atomic.Uint64) *hub {
	return &hub{subs: make(map[*subscriber]struct{}), buffer: buffer, dropped: dropped}
}

func (h *hub) subscribe() (<-chan Event, func()) {
	s := &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{}), out: make(chan Event)}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(s.out)
		return s.out, func() {}
	}
	h.subs[s] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		s.run()
	}()
	cancel := func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
		s.stop()
	}
	return s.out, cancel
}

func (s *subscriber) stop() { s.stopped.Do(func() { close(s.done) }) }

func (s *subscriber) run() {
	defer close(s.out)
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		ev := s.queue[0]
		s.queue[0] = Event{}
		s.queue = s.queue[1:]
		if ev.Type == EventLoad {
			s.loads--
		}
		s.mu.Unlock()
		select {
		case s.out <- ev:
		case <-s.done:
			return
		}
	}
}

// publish queues ev for every subscriber; it never blocks.
func (h *hub) publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		if ev.Type == EventLoad && s.loads >= h.buffer {
			s.mu.Unlock()
			h.dropped.Add(1)
			continue
		}
		if ev.Type == EventLoad {
			s.loads++
		}
		s.queue = append(s.queue, ev)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// close ends every subscription and waits for their goroutines.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	subs := h.subs
	h.subs = map[*subscriber]struct{}{}
	h.mu.Unlock()
	for s := range subs {
		s.stop()
	}
	h.wg.Wait()
}
