package dataplane

import (
	"context"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The callee halves of tasks: a peer node, authenticated as fromNode, asks
// this node about a task it holds (or to start one for a local agent).

// ReceiveSubmit starts a task for a local agent. The call passes the same
// checks as a forwarded call; the digest is computed here, not taken from
// the wire, so a peer cannot make a resubmission match another payload.
func (p *Plane) ReceiveSubmit(ctx context.Context, fromNode string, req *meshnodev1.ForwardSubmitRequest) (*meshnodev1.ForwardSubmitResponse, error) {
	if err := p.heldHere(req.GetTaskId()); err != nil {
		return nil, err
	}
	in, err := p.inbound(ctx, fromNode, req.GetCall())
	if err != nil {
		return nil, err
	}
	in.d.TaskId, in.d.Streaming = req.GetTaskId(), true
	t, existing, err := p.startTask(req.GetTaskId(), taskDigest(in.d.GetCapability(), in.d.GetPayload()), in.target, in.d, in.cc)
	p.logCall(ctx, callLine{side: "callee", fromNode: fromNode, caller: in.d.GetCallerAgentId(), callee: in.target, capability: in.d.GetCapability(),
		attempt: int(in.d.GetAttempt()), err: err})
	if err != nil {
		return nil, err
	}
	return &meshnodev1.ForwardSubmitResponse{Task: t, Existing: existing}, nil
}

// ReceiveGetTask answers GetTask for a task held here.
func (p *Plane) ReceiveGetTask(_ context.Context, _ string, req *meshnodev1.GetTaskRequest) (*meshnodev1.GetTaskResponse, error) {
	if err := p.heldHere(req.GetId()); err != nil {
		return nil, err
	}
	t, err := p.cfg.Tasks.Get(req.GetId())
	if err != nil {
		return nil, err
	}
	return &meshnodev1.GetTaskResponse{Task: t}, nil
}

// ReceiveCancelTask cancels a task held here.
func (p *Plane) ReceiveCancelTask(_ context.Context, _ string, req *meshnodev1.CancelTaskRequest) (*meshnodev1.CancelTaskResponse, error) {
	if err := p.heldHere(req.GetId()); err != nil {
		return nil, err
	}
	t, err := p.cfg.Tasks.Cancel(req.GetId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &meshnodev1.CancelTaskResponse{Task: t}, nil
}

// ReceiveWatchTask streams a task held here to a peer: one
// WatchTaskRequest in, TaskEvents out, until the task's final event.
func (p *Plane) ReceiveWatchTask(ctx context.Context, _ string, st PeerStream) error {
	req := &meshnodev1.WatchTaskRequest{}
	if err := st.Recv(req); err != nil {
		return status.Errorf(codes.InvalidArgument, "reading the forwarded watch: %v", status.Convert(err).Message())
	}
	if err := p.heldHere(req.GetId()); err != nil {
		return err
	}
	return p.cfg.Tasks.Watch(ctx, req.GetId(), req.GetAfterSeq(), func(ev *meshnodev1.TaskEvent) error { return st.Send(ev) })
}

// heldHere checks that task id names this node: a peer asks the node the
// id names, never one that would have to forward again.
func (p *Plane) heldHere(id string) error {
	node, addr, err := p.taskNode(id)
	if err != nil {
		return err
	}
	if addr != "" || node != p.cfg.LocalNode {
		return status.Errorf(codes.NotFound, "task %s is held by node %s, not %s", id, node, p.cfg.LocalNode)
	}
	return nil
}
