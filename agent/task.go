package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// TaskState is where a task is in its life.
type TaskState = meshnodev1.TaskState

// Task states. A handler reports TaskWorking or TaskInputRequired with
// Task.Status; the final states come from how the handler returns
// (nil: TaskCompleted, an error: TaskFailed) or from CancelTask.
const (
	TaskSubmitted     = meshnodev1.TaskState_TASK_STATE_SUBMITTED
	TaskWorking       = meshnodev1.TaskState_TASK_STATE_WORKING
	TaskInputRequired = meshnodev1.TaskState_TASK_STATE_INPUT_REQUIRED
	TaskCompleted     = meshnodev1.TaskState_TASK_STATE_COMPLETED
	TaskFailed        = meshnodev1.TaskState_TASK_STATE_FAILED
	TaskCanceled      = meshnodev1.TaskState_TASK_STATE_CANCELED
)

// Task is a running task as its handler sees it: each Status and Artifact
// is recorded, durably and numbered, by the node that holds the task, and
// reaches every watcher. Not safe for concurrent use.
type Task struct {
	// ID is the task's id ("<node>/<key>"), as Submit returned it.
	ID   string
	send func([]byte) error
}

// Status reports a state change: TaskWorking or TaskInputRequired, with a
// message for people. It blocks while the node has no room, like a
// streaming send, and fails once the task is over (cancelled): the handler
// should then return.
func (t *Task) Status(state TaskState, msg string) error {
	if state != TaskWorking && state != TaskInputRequired {
		return fmt.Errorf("agent: task %s: a handler reports WORKING or INPUT_REQUIRED; return to end the task", t.ID)
	}
	return t.update(&meshnodev1.TaskUpdate{Update: &meshnodev1.TaskUpdate_Status{Status: &meshnodev1.TaskStatus{State: state, Message: msg}}})
}

// Artifact records a named output of the task. data is at most the node's
// payload limit.
func (t *Task) Artifact(name string, data []byte) error {
	return t.update(&meshnodev1.TaskUpdate{Update: &meshnodev1.TaskUpdate_Artifact{Artifact: &meshnodev1.TaskArtifact{Name: name, Data: data}}})
}

func (t *Task) update(u *meshnodev1.TaskUpdate) error {
	b, err := proto.Marshal(u)
	if err != nil {
		return fmt.Errorf("agent: task %s: %w", t.ID, err)
	}
	return t.send(b)
}

// TaskHandlerFunc runs one task. ctx ends when the task is cancelled
// (CancelTask) or its deadline passes; calls made with ctx end with it, on
// whichever node they run. Returning nil completes the task; an error
// fails it with that error's message.
type TaskHandlerFunc func(ctx context.Context, req *Request, t *Task) error

// HandleTask adds a capability that runs as a task (Client.Submit). It is
// a streaming handler underneath: each Status or Artifact is one chunk
// carrying a TaskUpdate, which the task's node records as an event. Like
// Handle, it panics on an empty name, a nil handler or a duplicate.
func (a *Agent) HandleTask(capability Capability, h TaskHandlerFunc) {
	if h == nil {
		panic("agent: HandleTask needs a non-nil handler")
	}
	a.HandleStream(capability, func(ctx context.Context, req *Request, send func([]byte) error) error {
		return h(ctx, req, &Task{ID: req.TaskID, send: send})
	})
}

// SubmitOption adjusts a Submit.
type SubmitOption func(*meshnodev1.SubmitRequest)

// TaskKey names the task: submitting the same key and payload again (through
// the same node) returns the existing task; another payload is refused
// with AlreadyExists.
func TaskKey(key string) SubmitOption {
	return func(r *meshnodev1.SubmitRequest) { r.Id = key }
}

// TaskDeadline is when the task must end (default: the node's task timeout).
// The ctx given to Submit bounds only the Submit call itself.
func TaskDeadline(t time.Time) SubmitOption {
	return func(r *meshnodev1.SubmitRequest) { r.Deadline = timestamppb.New(t) }
}

// Submit starts a task on the best agent for capability and returns it at
// once, usually in state TaskWorking. A handler that submits with its ctx
// makes the task its child for cycle detection.
func (c *Client) Submit(ctx context.Context, capability string, payload []byte, opts ...SubmitOption) (*meshnodev1.Task, error) {
	call := c.callRequest(ctx, capability, payload, nil)
	req := &meshnodev1.SubmitRequest{Capability: capability, Payload: payload, Metadata: call.GetMetadata(),
		CallerAgentId: call.GetCallerAgentId(), ParentCallId: call.GetParentCallId()}
	for _, o := range opts {
		o(req)
	}
	resp, err := c.tasks.Submit(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("agent: submit %q: %w", capability, err)
	}
	return resp.GetTask(), nil
}

// GetTask returns a task as it stands, from whichever node holds it.
func (c *Client) GetTask(ctx context.Context, id string) (*meshnodev1.Task, error) {
	resp, err := c.tasks.GetTask(ctx, &meshnodev1.GetTaskRequest{Id: id})
	if err != nil {
		return nil, fmt.Errorf("agent: get task %s: %w", id, err)
	}
	return resp.GetTask(), nil
}

// WatchTask passes the task's events after afterSeq to fn, in order and
// each once, then the new ones as they happen, and returns nil after the
// final one. To resume after a disconnect, watch again from the last
// sequence fn saw. An error from fn stops the watch and is returned.
func (c *Client) WatchTask(ctx context.Context, id string, afterSeq uint64, fn func(*meshnodev1.TaskEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ws, err := c.tasks.WatchTask(ctx, &meshnodev1.WatchTaskRequest{Id: id, AfterSeq: afterSeq})
	if err != nil {
		return fmt.Errorf("agent: watch task %s: %w", id, err)
	}
	for {
		m, err := ws.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("agent: watch task %s: %w", id, err)
		}
		if err := fn(m.GetEvent()); err != nil {
			return err
		}
	}
}

// CancelTask cancels a task; one that already ended is returned as it was.
func (c *Client) CancelTask(ctx context.Context, id, reason string) (*meshnodev1.Task, error) {
	resp, err := c.tasks.CancelTask(ctx, &meshnodev1.CancelTaskRequest{Id: id, Reason: reason})
	if err != nil {
		return nil, fmt.Errorf("agent: cancel task %s: %w", id, err)
	}
	return resp.GetTask(), nil
}
