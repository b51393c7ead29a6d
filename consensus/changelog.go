package consensus

import (
	"sort"
	"sync"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// changeLog keeps the most recent state events in memory so that watches and
// client replicas can resume from an index without a full snapshot. It is
// bounded: a reader that falls further behind than the log holds is told so
// and starts over from a snapshot.
type changeLog struct {
	mu     sync.Mutex
	max    int
	events []*meshnodev1.RaftStateEvent
	last   uint64
	// epoch changes when the state is replaced wholesale (snapshot restore):
	// the event chain breaks and every reader must resynchronise.
	epoch  uint64
	notify chan struct{}
}

func newChangeLog(max int) *changeLog {
	return &changeLog{max: max, notify: make(chan struct{})}
}

// append records the event of one applied log entry and wakes readers. The
// caller serialises appends in index order.
func (l *changeLog) append(ev *meshnodev1.RaftStateEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev.PrevIndex = l.last
	l.last = ev.GetIndex()
	l.events = append(l.events, ev)
	if len(l.events) > l.max {
		// Drop the oldest quarter at once so trimming is amortised O(1).
		drop := len(l.events) - l.max + l.max/4
		l.events = append([]*meshnodev1.RaftStateEvent(nil), l.events[drop:]...)
	}
	close(l.notify)
	l.notify = make(chan struct{})
}

// reset empties the log after the state was replaced at index.
func (l *changeLog) reset(index uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = nil
	l.last = index
	l.epoch++
	close(l.notify)
	l.notify = make(chan struct{})
}

// position reports the last index and epoch, and a channel closed on the
// next change.
func (l *changeLog) position() (last, epoch uint64, notify <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, l.epoch, l.notify
}

// since returns the events after index (at most limit), the epoch they
// belong to and a channel closed on the next change. ok is false when the log
// no longer holds the events right after index: the reader must resync.
func (l *changeLog) since(index uint64, limit int) (evs []*meshnodev1.RaftStateEvent, epoch uint64, notify <-chan struct{}, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	epoch, notify = l.epoch, l.notify
	if index >= l.last {
		return nil, epoch, notify, true
	}
	i := sort.Search(len(l.events), func(i int) bool { return l.events[i].GetIndex() > index })
	if i == len(l.events) || l.events[i].GetPrevIndex() != index {
		return nil, epoch, notify, false
	}
	end := len(l.events)
	if limit > 0 && end-i > limit {
		end = i + limit
	}
	return append([]*meshnodev1.RaftStateEvent(nil), l.events[i:end]...), epoch, notify, true
}
