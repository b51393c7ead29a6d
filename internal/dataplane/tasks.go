package dataplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/agentmesh/meshnode/internal/hub"
	"github.com/agentmesh/meshnode/internal/tasks"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/routing"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Peer RPC methods of tasks. A task lives on the node of the agent that
// runs it; these carry Submit there, and the other calls to whichever node
// a task id names.
const (
	MethodSubmitTask = "task.Submit"
	MethodGetTask    = "task.Get"
	MethodCancelTask = "task.Cancel"
	// MethodWatchTask is a stream: one WatchTaskRequest, then TaskEvents.
	MethodWatchTask = "task.Watch"
)

// keyPattern is what a caller may choose as a task key: it becomes the part
// of the id after "<node>/", so no '/'.
var keyPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// taskKeys serialises submits that name the same key on this node, so two
// racing submits of one key start one task.
type taskKeys struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	refs  map[string]int
}

func (k *taskKeys) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks, k.refs = map[string]*sync.Mutex{}, map[string]int{}
	}
	l := k.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		k.locks[key] = l
	}
	k.refs[key]++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if k.refs[key]--; k.refs[key] == 0 {
			delete(k.locks, key)
			delete(k.refs, key)
		}
		k.mu.Unlock()
	}
}

// taskDigest identifies what a task runs: resubmitting the same key with
// the same digest is the same task.
func taskDigest(capability string, payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(capability))
	h.Write([]byte{0})
	h.Write(payload)
	return h.Sum(nil)
}

// Submit routes a task from a process on the socket, owner, to the best
// agent for its capability, as a streaming call the agent's node records,
// and returns the task as soon as that node has delivered it. The router
// may try another agent while no node has taken the task.
func (p *Plane) Submit(ctx context.Context, owner hub.Owner, req *meshnodev1.SubmitRequest) (*meshnodev1.SubmitResponse, error) {
	if p.cfg.Tasks == nil {
		return nil, status.Errorf(codes.Unimplemented, "node %s runs no task manager", p.cfg.LocalNode)
	}
	key := req.GetId()
	if key != "" && !keyPattern.MatchString(key) {
		return nil, status.Errorf(codes.InvalidArgument, "id %q: use 1 to 128 letters, digits, '.', '_', ':' or '-'", key)
	}
	digest := taskDigest(req.GetCapability(), req.GetPayload())
	deadline := req.GetDeadline()
	if deadline == nil {
		deadline = timestamppb.New(p.cfg.Clock.Now().Add(p.cfg.TaskTimeout))
	}
	creq := &meshnodev1.CallRequest{Capability: req.GetCapability(), Payload: req.GetPayload(), ContentType: req.GetContentType(),
		Deadline: deadline, Metadata: req.GetMetadata(), CallerAgentId: req.GetCallerAgentId(), ParentCallId: req.GetParentCallId(), Routing: req.GetRouting()}
	// The task outlives this RPC: its deadline is its own, not the RPC's.
	c, err := p.plan(context.WithoutCancel(ctx), owner, creq)
	if err != nil {
		return nil, err
	}
	if key != "" {
		defer p.keys.lock(key)()
		if resp, done, err := p.resubmit(ctx, key, digest); done {
			return resp, err
		}
	} else {
		key = randomKey()
	}
	cands, pol, err := p.cfg.Catalog.Resolve(ctx, req.GetCapability())
	if err != nil {
		return nil, err
	}
	c.route.Policy = pol
	// The router caps a call's deadline by its context's; a task's is its
	// own, so route on a context that keeps the RPC's values and
	// cancellation but not its deadline.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	rctx = routing.ExtractTraceContext(rctx, req.GetMetadata())
	var out *meshnodev1.SubmitResponse
	_, err = p.cfg.Router.Route(rctx, c.route, cands, routing.AnswerFunc(func(actx context.Context, a routing.Attempt) (*meshnodev1.CallResult, bool, error) {
		resp, started, err := p.submitAttempt(actx, c, a, a.Candidate.Node+"/"+key, digest)
		out = resp
		return &meshnodev1.CallResult{}, started, err
	}))
	if err != nil {
		return nil, err
	}
	if req.GetId() != "" {
		if err := p.cfg.Tasks.Store().PutKey(key, out.GetTask()); err != nil {
			return nil, status.Errorf(codes.Internal, "task %s started, but its key could not be recorded: %v", out.GetTask().GetId(), err)
		}
	}
	return out, nil
}

// resubmit answers a submit whose key this node has seen: the same digest
// is that task, another is AlreadyExists. done is false when the key is new
// (or its task is gone) and the submit should go on.
func (p *Plane) resubmit(ctx context.Context, key string, digest []byte) (*meshnodev1.SubmitResponse, bool, error) {
	rec, ok, err := p.cfg.Tasks.Store().Key(key)
	if err != nil {
		return nil, true, status.Errorf(codes.Internal, "reading task key %q: %v", key, err)
	}
	if !ok {
		return nil, false, nil
	}
	if string(rec.GetDigest()) != string(digest) {
		return nil, true, status.Errorf(codes.AlreadyExists, "id %q was submitted with another capability or payload (task %s); choose another id", key, rec.GetId())
	}
	t, err := p.GetTask(ctx, rec.GetId())
	if status.Code(err) == codes.NotFound {
		return nil, false, nil // its retention ended: the key is free again
	}
	if err != nil {
		return nil, true, err
	}
	return &meshnodev1.SubmitResponse{Task: t, Existing: true}, true, nil
}

func randomKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// submitAttempt asks attempt a's node to start the task under id.
func (p *Plane) submitAttempt(ctx context.Context, c *call, a routing.Attempt, id string, digest []byte) (*meshnodev1.SubmitResponse, bool, error) {
	if err := p.authorize(ctx, c.caller, c.req.GetCapability(), a.Candidate.AgentID); err != nil {
		return nil, false, err
	}
	d := c.delivery(a)
	d.TaskId, d.Streaming = id, true
	if a.Candidate.Node == p.cfg.LocalNode {
		cc := localContext(d, a)
		t, existing, err := p.startTask(id, digest, a.Candidate.AgentID, d, cc)
		if err != nil {
			code := status.Code(err)
			return nil, code != codes.Unavailable && code != codes.ResourceExhausted, err
		}
		return &meshnodev1.SubmitResponse{Task: t, Existing: existing}, true, nil
	}
	addr, ok := p.cfg.Catalog.NodeAddress(a.Candidate.Node)
	if !ok {
		return nil, false, status.Errorf(codes.Unavailable, "node %s of agent %s has no known address", a.Candidate.Node, a.Candidate.AgentID)
	}
	var resp meshnodev1.ForwardSubmitResponse
	err := p.cfg.Peers.Invoke(ctx, addr, MethodSubmitTask, &meshnodev1.ForwardSubmitRequest{
		Call:   &meshnodev1.ForwardCallRequest{TargetAgentId: a.Candidate.AgentID, Delivery: d, Routing: a.Meta.ToProto()},
		TaskId: id}, &resp)
	if err != nil {
		code := status.Code(err)
		return nil, code != codes.Unavailable && code != codes.ResourceExhausted, err
	}
	return &meshnodev1.SubmitResponse{Task: resp.GetTask(), Existing: resp.GetExisting()}, true, nil
}

// startTask records and starts a task for a local agent.
func (p *Plane) startTask(id string, digest []byte, agentID string, d *meshnodev1.Delivery, cc hub.CallContext) (*meshnodev1.Task, bool, error) {
	t := &meshnodev1.Task{Id: id, Capability: d.GetCapability(), AgentId: agentID, Deadline: timestamppb.New(cc.Deadline),
		CallerAgentId: d.GetCallerAgentId(), Digest: digest}
	return p.cfg.Tasks.Start(t, func(ctx context.Context) (tasks.Frames, error) {
		return p.cfg.Local.DeliverStream(ctx, agentID, d, cc)
	})
}

// taskNode is the node that holds task id ("<node>/<key>").
func (p *Plane) taskNode(id string) (node, addr string, err error) {
	node, key, ok := strings.Cut(id, "/")
	if !ok || node == "" || !keyPattern.MatchString(key) {
		return "", "", status.Errorf(codes.InvalidArgument, "task id %q is not <node>/<key>, as Submit returns it", id)
	}
	if p.cfg.Tasks == nil {
		return "", "", status.Errorf(codes.Unimplemented, "node %s runs no task manager", p.cfg.LocalNode)
	}
	if node == p.cfg.LocalNode {
		return node, "", nil
	}
	addr, ok = p.cfg.Catalog.NodeAddress(node)
	if !ok {
		return "", "", status.Errorf(codes.Unavailable, "node %s, which holds task %s, has no known address (it is down or left); retry when it is back", node, id)
	}
	return node, addr, nil
}

// GetTask returns a task from the node that holds it.
func (p *Plane) GetTask(ctx context.Context, id string) (*meshnodev1.Task, error) {
	_, addr, err := p.taskNode(id)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		return p.cfg.Tasks.Get(id)
	}
	var resp meshnodev1.GetTaskResponse
	if err := p.cfg.Peers.Invoke(ctx, addr, MethodGetTask, &meshnodev1.GetTaskRequest{Id: id}, &resp); err != nil {
		return nil, err
	}
	return resp.GetTask(), nil
}

// CancelTask cancels a task on the node that holds it.
func (p *Plane) CancelTask(ctx context.Context, req *meshnodev1.CancelTaskRequest) (*meshnodev1.Task, error) {
	_, addr, err := p.taskNode(req.GetId())
	if err != nil {
		return nil, err
	}
	if addr == "" {
		return p.cfg.Tasks.Cancel(req.GetId(), req.GetReason())
	}
	var resp meshnodev1.CancelTaskResponse
	if err := p.cfg.Peers.Invoke(ctx, addr, MethodCancelTask, req, &resp); err != nil {
		return nil, err
	}
	return resp.GetTask(), nil
}

// WatchTask passes a task's events after req.after_seq to send, from the
// node that holds it, until its final event.
func (p *Plane) WatchTask(ctx context.Context, req *meshnodev1.WatchTaskRequest, send func(*meshnodev1.TaskEvent) error) error {
	_, addr, err := p.taskNode(req.GetId())
	if err != nil {
		return err
	}
	if addr == "" {
		return p.cfg.Tasks.Watch(ctx, req.GetId(), req.GetAfterSeq(), send)
	}
	st, err := p.cfg.Peers.OpenStream(ctx, addr, MethodWatchTask)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Send(req); err != nil {
		return err
	}
	st.CloseSend()
	for {
		ev := &meshnodev1.TaskEvent{}
		if err := st.Recv(ev); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := send(ev); err != nil {
			return err
		}
	}
}
