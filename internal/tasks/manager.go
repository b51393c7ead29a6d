package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/internal/clock"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// DefaultRetention is how long an ended task stays readable: long enough
// for a caller that was away overnight to collect its result.
const DefaultRetention = 24 * time.Hour

// watchBatch bounds how many events one read of the log holds in memory.
const watchBatch = 256

// Config configures a Manager. Node and Store are required.
type Config struct {
	Node  string // this node's name: task ids start with it
	Store *Store // the manager uses it; its owner closes it after Close
	// Retention is how long an ended task is kept. Default DefaultRetention.
	Retention time.Duration
	// SweepInterval is how often ended tasks past retention are forgotten.
	// Default: a tenth of Retention, at most ten minutes.
	SweepInterval time.Duration
	Clock         clock.Clock  // default the system clock
	Logger        *slog.Logger // default discards
}

// Frames is a running task's streaming answer from its agent, frame by
// frame; Close withdraws the call if it has not ended. *hub.Reply is one.
type Frames interface {
	Next(ctx context.Context) (*meshnodev1.StreamFrame, error)
	Close()
}

// Deliver hands a task's call to its local agent; the call lives as long
// as ctx. Unavailable and ResourceExhausted mean the agent never got it.
type Deliver func(ctx context.Context) (Frames, error)

// errStopping ends the runs of a node that stops.
var errStopping = errors.New("the node is stopping")

// Manager runs the tasks held by this node. It owns one goroutine per
// running task and the sweeper; Close stops them all.
type Manager struct {
	cfg   Config
	store *Store
	base  context.Context
	stop  context.CancelCauseFunc
	wg    sync.WaitGroup

	mu      sync.Mutex
	changed map[string]chan struct{}           // closed when the task's log grows
	running map[string]context.CancelCauseFunc // the runs of this process
}

// New checks cfg, fails the tasks a previous run of the node left
// unfinished (their agents' streams ended with it), and starts the sweeper.
func New(cfg Config) (*Manager, error) {
	if cfg.Node == "" || cfg.Store == nil {
		return nil, errors.New("tasks: Node and Store are required")
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = min(cfg.Retention/10, 10*time.Minute)
	}
	cfg.Clock = clock.OrSystem(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, store: cfg.Store, changed: map[string]chan struct{}{}, running: map[string]context.CancelCauseFunc{}}
	left, err := m.store.Unfinished()
	if err != nil {
		return nil, err
	}
	for _, t := range left {
		m.finish(t.GetId(), meshnodev1.TaskState_TASK_STATE_FAILED, fmt.Sprintf("node %s restarted while the task ran; its handler's stream was lost", cfg.Node))
	}
	m.base, m.stop = context.WithCancelCause(context.Background())
	m.wg.Add(1)
	go m.sweepLoop()
	return m, nil
}

// Close ends every run (their tasks fail: the node is going) and the
// sweeper, and waits for them.
func (m *Manager) Close() {
	m.stop(errStopping)
	m.wg.Wait()
}

// Store is the manager's store (the data plane keeps callers' keys in it).
func (m *Manager) Store() *Store { return m.store }

// Retention is how long ended tasks are kept.
func (m *Manager) Retention() time.Duration { return m.cfg.Retention }

func (m *Manager) sweepLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.base.Done():
			return
		case <-m.cfg.Clock.After(m.cfg.SweepInterval):
			m.Sweep()
		}
	}
}

// Sweep forgets the tasks that ended more than the retention ago.
func (m *Manager) Sweep() int {
	n, err := m.store.Sweep(m.cfg.Clock.Now().Add(-m.cfg.Retention))
	if err != nil {
		m.cfg.Logger.Warn("sweeping ended tasks failed; retried at the next sweep", "err", err)
	}
	return n
}

// Start records task t (SUBMITTED), delivers it, records WORKING and runs
// it in the background until its end. If t's id exists with the same
// digest, the existing task is returned with true and nothing runs. A
// delivery that fails forgets the task again, so the caller may try
// another agent under the same id.
func (m *Manager) Start(t *meshnodev1.Task, deliver Deliver) (*meshnodev1.Task, bool, error) {
	if m.base.Err() != nil {
		return nil, false, status.Errorf(codes.Unavailable, "node %s is stopping; submit elsewhere", m.cfg.Node)
	}
	t, existing, err := m.store.Create(t, m.cfg.Clock.Now())
	if err != nil || existing {
		return t, existing, err
	}
	ctx, cancel := context.WithCancelCause(m.base)
	ctx, cancelDeadline := context.WithDeadline(ctx, t.GetDeadline().AsTime())
	frames, err := deliver(ctx)
	if err != nil {
		cancelDeadline()
		cancel(nil)
		if derr := m.store.Delete(t.GetId()); derr != nil {
			m.cfg.Logger.Warn("could not forget an undelivered task", "task_id", t.GetId(), "err", derr)
		}
		return nil, false, err
	}
	m.mu.Lock()
	m.running[t.GetId()] = cancel
	m.mu.Unlock()
	if _, got, err := m.append(t.GetId(), statusEvent(meshnodev1.TaskState_TASK_STATE_WORKING, "delivered to agent "+t.GetAgentId())); err == nil {
		t = got
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancelDeadline()
		m.run(ctx, t.GetId(), frames)
	}()
	return t, false, nil
}

// run records a task's answer, frame by frame, until its end.
func (m *Manager) run(ctx context.Context, id string, frames Frames) {
	defer func() {
		frames.Close() // withdraws the call from a handler still running
		m.mu.Lock()
		if cancel := m.running[id]; cancel != nil {
			cancel(nil)
		}
		delete(m.running, id)
		m.mu.Unlock()
	}()
	for {
		f, err := frames.Next(ctx)
		if err != nil {
			m.finish(id, meshnodev1.TaskState_TASK_STATE_FAILED, runError(ctx, err))
			return
		}
		switch fr := f.GetFrame().(type) {
		case *meshnodev1.StreamFrame_Chunk:
			ev, err := DecodeUpdate(fr.Chunk.GetData())
			if err != nil {
				m.finish(id, meshnodev1.TaskState_TASK_STATE_FAILED, err.Error())
				return
			}
			if _, _, err := m.append(id, ev); err != nil {
				return // ended meanwhile (cancelled); the deferred Close tells the handler
			}
		case *meshnodev1.StreamFrame_End:
			m.finish(id, meshnodev1.TaskState_TASK_STATE_COMPLETED, "completed")
			return
		case *meshnodev1.StreamFrame_Error:
			e := fr.Error
			m.finish(id, meshnodev1.TaskState_TASK_STATE_FAILED, fmt.Sprintf("%s: %s", codes.Code(e.GetCode()), e.GetMessage()))
			return
		default:
			m.finish(id, meshnodev1.TaskState_TASK_STATE_FAILED, "the agent sent an empty frame")
			return
		}
	}
}

// runError says why a run's stream ended early.
func runError(ctx context.Context, err error) string {
	switch {
	case errors.Is(context.Cause(ctx), errStopping):
		return "the node stopped while the task ran"
	case ctx.Err() == context.DeadlineExceeded:
		return "the task's deadline passed"
	}
	return status.Convert(err).Message()
}

// finish records a final state; a task that already ended keeps its own.
func (m *Manager) finish(id string, state meshnodev1.TaskState, msg string) {
	if _, _, err := m.append(id, statusEvent(state, msg)); err != nil && status.Code(err) != codes.FailedPrecondition {
		m.cfg.Logger.Warn("could not record a task's end", "task_id", id, "state", state, "err", err)
	}
}

// append records an event and wakes the task's watchers.
func (m *Manager) append(id string, ev *meshnodev1.TaskEvent) (*meshnodev1.TaskEvent, *meshnodev1.Task, error) {
	out, t, err := m.store.Append(id, ev, m.cfg.Clock.Now())
	if err == nil {
		m.signal(id)
	}
	return out, t, err
}

func statusEvent(state meshnodev1.TaskState, msg string) *meshnodev1.TaskEvent {
	return &meshnodev1.TaskEvent{Event: &meshnodev1.TaskEvent_Status{Status: &meshnodev1.TaskStatus{State: state, Message: msg}}}
}
