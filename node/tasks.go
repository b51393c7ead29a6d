package node

import (
	"context"
	"path/filepath"

	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/internal/tasks"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// taskStoreFile holds the tasks of this node's agents, in the data dir.
const taskStoreFile = "tasks.db"

// startTasks opens the task store and its manager, before routing: the
// data plane starts tasks through it.
func (n *Node) startTasks(context.Context) error {
	st, err := tasks.OpenStore(filepath.Join(n.cfg.DataDir, taskStoreFile))
	if err != nil {
		return err
	}
	m, err := tasks.New(tasks.Config{Node: n.cfg.Name, Store: st, Retention: n.cfg.TaskRetention, Clock: n.clock,
		Logger: n.log.With("component", "tasks")})
	if err != nil {
		st.Close()
		return err
	}
	n.tasks = m
	return nil
}

func (n *Node) stopTasks(context.Context) {
	n.tasks.Close()
	if err := n.tasks.Store().Close(); err != nil {
		n.log.Warn("closing the task store", "err", err)
	}
}

// registerTaskHandlers serves the task calls peers forward to the node
// that holds a task.
func (n *Node) registerTaskHandlers() {
	handlePeer(n, dataplane.MethodSubmitTask, func() *meshnodev1.ForwardSubmitRequest { return &meshnodev1.ForwardSubmitRequest{} }, (*dataplane.Plane).ReceiveSubmit)
	handlePeer(n, dataplane.MethodGetTask, func() *meshnodev1.GetTaskRequest { return &meshnodev1.GetTaskRequest{} }, (*dataplane.Plane).ReceiveGetTask)
	handlePeer(n, dataplane.MethodCancelTask, func() *meshnodev1.CancelTaskRequest { return &meshnodev1.CancelTaskRequest{} }, (*dataplane.Plane).ReceiveCancelTask)
	handlePeerStream(n, dataplane.MethodWatchTask, (*dataplane.Plane).ReceiveWatchTask)
}
