package consensus

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// EventKind says what a watch event carries.
type EventKind int

const (
	// EventSnapshot carries every matching agent at Index. It starts a watch
	// and is sent again whenever the watcher fell too far behind to be
	// given the individual changes (or the state was restored): replace
	// what you hold.
	EventSnapshot EventKind = iota + 1
	// EventPut carries an agent that was registered or changed.
	EventPut
	// EventDelete carries an agent that was removed or no longer matches
	// the filter (its last known value).
	EventDelete
)

// Event is one registry change delivered by Watch.
type Event struct {
	Kind   EventKind
	Index  uint64
	Agent  *meshnodev1.Agent   // EventPut, EventDelete
	Agents []*meshnodev1.Agent // EventSnapshot
}

// WatchFilter narrows a watch. An empty capability matches every agent.
type WatchFilter struct {
	Capability string
}

func (f WatchFilter) matches(a *meshnodev1.Agent) bool {
	if f.Capability == "" {
		return true
	}
	for _, c := range a.GetCapabilities() {
		if c.GetName() == f.Capability {
			return true
		}
	}
	return false
}

// Watch pushes registry changes after fromIndex (0: start with a snapshot)
// until ctx ends or the store closes, then closes the channel. Events come
// in index order. A slow reader is not dropped: it is sent a new snapshot
// if it falls behind the change log.
func (s *Store) Watch(ctx context.Context, fromIndex uint64, f WatchFilter) <-chan Event {
	out := make(chan Event, 64)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		w := &watcher{s: s, ctx: ctx, out: out, f: f, matching: map[string]bool{}}
		w.run(fromIndex)
	}()
	return out
}

type watcher struct {
	s        *Store
	ctx      context.Context
	out      chan<- Event
	f        WatchFilter
	matching map[string]bool
}

func (w *watcher) send(ev Event) bool {
	select {
	case w.out <- ev:
		return true
	case <-w.ctx.Done():
	case <-w.s.ctx.Done():
	}
	return false
}

func (w *watcher) run(from uint64) {
	_, epoch, _, ok := w.s.st.log.since(from, 1)
	needSnap := from == 0 || !ok
	if !needSnap {
		// Resuming: treat what matches now as what the reader holds.
		txn, _ := w.s.st.read()
		if it, err := txn.Get(tableAgents, "id"); err == nil {
			for obj := it.Next(); obj != nil; obj = it.Next() {
				if a := obj.(*meshnodev1.Agent); w.f.matches(a) {
					w.matching[a.GetId()] = true
				}
			}
		}
	}
	for {
		if needSnap {
			var snap Event
			snap, epoch = w.snapshot()
			if !w.send(snap) {
				return
			}
			from, needSnap = snap.Index, false
		}
		evs, ep, notify, ok := w.s.st.log.since(from, eventBatch)
		if ep != epoch || !ok {
			needSnap = true
			continue
		}
		for _, ev := range evs {
			for _, c := range ev.GetChanges() {
				a := c.GetRecord().GetAgent()
				if a == nil {
					continue
				}
				if !w.change(ev.GetIndex(), c.GetDelete(), a) {
					return
				}
			}
			from = ev.GetIndex()
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-notify:
		case <-w.ctx.Done():
			return
		case <-w.s.ctx.Done():
			return
		}
	}
}

func (w *watcher) snapshot() (Event, uint64) {
	txn, idx, epoch := w.s.st.snapshotTxn()
	ev := Event{Kind: EventSnapshot, Index: idx}
	w.matching = map[string]bool{}
	if it, err := txn.Get(tableAgents, "id"); err == nil {
		for obj := it.Next(); obj != nil; obj = it.Next() {
			if a := obj.(*meshnodev1.Agent); w.f.matches(a) {
				ev.Agents = append(ev.Agents, proto.CloneOf(a))
				w.matching[a.GetId()] = true
			}
		}
	}
	return ev, epoch
}

func (w *watcher) change(index uint64, deleted bool, a *meshnodev1.Agent) bool {
	id := a.GetId()
	switch {
	case !deleted && w.f.matches(a):
		w.matching[id] = true
		return w.send(Event{Kind: EventPut, Index: index, Agent: proto.CloneOf(a)})
	case w.matching[id]:
		delete(w.matching, id)
		return w.send(Event{Kind: EventDelete, Index: index, Agent: proto.CloneOf(a)})
	}
	return true
}

// sleep waits d, or returns early when ctx ends or the store closes.
func (s *Store) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrClosed
	}
}
