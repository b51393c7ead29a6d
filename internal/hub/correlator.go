package hub

import (
	"sync"
	"time"
)

// correlator matches answers to the requests waiting for them: calls
// waiting for a Respond, vote requests waiting for a Vote. Each request id
// is bound to the agent it was sent to; an answer from another agent does
// not match. The first answer is handed to the waiter; a second one is
// refused with the first, so the caller can compare them (two different
// signed votes are equivocation).
//
// A request is forgotten when its waiter finishes, unless the waiter asks
// for it to be kept: then answers still match (a late first answer is
// taken, a second one returns the first) until sweep passes the keep time.
type correlator[T any] struct {
	notPending error  // the sentinel for an answer nobody waits for
	what       string // "call", "vote request": names requests in errors
	gone       string // why a request may not be pending, for errors

	mu sync.Mutex
	m  map[string]*waiter[T]
}

type waiter[T any] struct {
	agentID  string
	call     CallContext
	answer   chan T // holds the first answer
	first    T
	answered bool
	finished bool      // nobody waits any more
	forgetAt time.Time // for a finished request: when sweep forgets it
}

func newCorrelator[T any](notPending error, what, gone string) *correlator[T] {
	return &correlator[T]{notPending: notPending, what: what, gone: gone, m: map[string]*waiter[T]{}}
}

// add starts waiting for the answer to request id sent to agentID.
func (c *correlator[T]) add(id, agentID string, cc CallContext) (*waiter[T], error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; ok {
		return nil, errorf(ErrDuplicateRequest, "%s id %q is already pending; use a new id", c.what, id)
	}
	w := &waiter[T]{agentID: agentID, call: cc, answer: make(chan T, 1)}
	c.m[id] = w
	return w, nil
}

// answer hands v, from agentID, to the request's waiter. For a request
// already answered it returns the first answer and ErrAlreadyAnswered.
func (c *correlator[T]) answer(id, agentID string, v T) (first T, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.m[id]
	if !ok || w.agentID != agentID {
		return first, errorf(c.notPending, "%s %q is not pending for agent %s: %s", c.what, id, agentID, c.gone)
	}
	if w.answered {
		return w.first, errorf(ErrAlreadyAnswered, "%s %q was already answered", c.what, id)
	}
	w.first, w.answered = v, true
	w.answer <- v
	return first, nil
}

// finish ends the wait for request id. With a zero keepUntil the request
// is forgotten at once; otherwise it is kept until sweep passes keepUntil.
func (c *correlator[T]) finish(id string, keepUntil time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.m[id]
	if !ok {
		return
	}
	if keepUntil.IsZero() {
		delete(c.m, id)
		return
	}
	w.finished, w.forgetAt = true, keepUntil
}

// sweep forgets finished requests kept past their time and returns how
// many it forgot.
func (c *correlator[T]) sweep(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for id, w := range c.m {
		if w.finished && now.After(w.forgetAt) {
			delete(c.m, id)
			n++
		}
	}
	return n
}

// waiting returns the agent and call context of a request still waited
// for.
func (c *correlator[T]) waiting(id string) (string, CallContext, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.m[id]
	if !ok || w.finished {
		return "", CallContext{}, false
	}
	return w.agentID, w.call, true
}

func (c *correlator[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// zeroTime asks finish to forget a request at once.
var zeroTime time.Time
