package tasks

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Get returns task id as it stands; NotFound if this node does not hold it.
func (m *Manager) Get(id string) (*meshnodev1.Task, error) { return m.store.Get(id) }

// Watch passes task id's events after sequence after to send, in order and
// each once, then the new ones as they are recorded, until the task's final
// event (or ctx ends). A task already final at after returns at once.
func (m *Manager) Watch(ctx context.Context, id string, after uint64, send func(*meshnodev1.TaskEvent) error) error {
	defer m.forgetIfFinal(id)
	for {
		// Take the wake-up channel before reading, so an event recorded
		// between the read and the wait is not missed.
		ch := m.changedCh(id)
		evs, t, err := m.store.Events(id, after, watchBatch)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := send(ev); err != nil {
				return err
			}
			after = ev.GetSeq()
			if IsFinal(ev.GetStatus().GetState()) {
				return nil
			}
		}
		if len(evs) == watchBatch {
			continue
		}
		if IsFinal(t.GetState()) && after >= t.GetLastSeq() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-m.base.Done():
			return status.Errorf(codes.Unavailable, "node %s is stopping; watch task %s again from sequence %d", m.cfg.Node, id, after)
		}
	}
}

// Cancel ends task id as CANCELED and cancels its handler's context (the
// handler's own calls end with it). A task that already ended is returned
// as it was.
func (m *Manager) Cancel(id, reason string) (*meshnodev1.Task, error) {
	msg := "canceled"
	if reason != "" {
		msg += ": " + reason
	}
	_, t, err := m.append(id, statusEvent(meshnodev1.TaskState_TASK_STATE_CANCELED, msg))
	if status.Code(err) == codes.FailedPrecondition {
		return m.store.Get(id)
	}
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	cancel := m.running[id]
	m.mu.Unlock()
	if cancel != nil {
		cancel(context.Canceled)
	}
	return t, nil
}

func (m *Manager) changedCh(id string) chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := m.changed[id]
	if ch == nil {
		ch = make(chan struct{})
		m.changed[id] = ch
	}
	return ch
}

func (m *Manager) signal(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ch := m.changed[id]; ch != nil {
		close(ch)
		delete(m.changed, id)
	}
}

// forgetIfFinal drops the wake-up channel of an ended task: nothing will
// close it again.
func (m *Manager) forgetIfFinal(id string) {
	if t, err := m.store.Get(id); err == nil && !IsFinal(t.GetState()) {
		return
	}
	m.mu.Lock()
	delete(m.changed, id)
	m.mu.Unlock()
}
