package agenttest

import (
	"context"
	"maps"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

type registrySvc struct {
	meshnodev1.UnimplementedRegistryServiceServer
	st *state
}

func (r *registrySvc) Register(_ context.Context, req *meshnodev1.RegisterRequest) (*meshnodev1.RegisterResponse, error) {
	a, idx, err := r.st.register(req)
	if err != nil {
		return nil, err
	}
	return &meshnodev1.RegisterResponse{Agent: a, Index: idx}, nil
}

func (r *registrySvc) Deregister(_ context.Context, req *meshnodev1.DeregisterRequest) (*meshnodev1.DeregisterResponse, error) {
	idx, err := r.st.deregister(req.GetAgentId())
	if err != nil {
		return nil, err
	}
	return &meshnodev1.DeregisterResponse{Index: idx}, nil
}

func (r *registrySvc) ListAgents(_ context.Context, req *meshnodev1.ListAgentsRequest) (*meshnodev1.ListAgentsResponse, error) {
	agents, idx := r.st.snapshot(func(a *meshnodev1.Agent) bool {
		return (req.GetCapability() == "" || capOf(a, req.GetCapability()) != nil) &&
			(req.GetNode() == "" || req.GetNode() == a.GetNode())
	})
	return &meshnodev1.ListAgentsResponse{Agents: agents, Index: idx}, nil
}

func (r *registrySvc) Discover(_ context.Context, req *meshnodev1.DiscoverRequest) (*meshnodev1.DiscoverResponse, error) {
	agents, idx := r.st.snapshot(func(a *meshnodev1.Agent) bool {
		c := capOf(a, req.GetCapability())
		if c == nil || c.GetProficiency() < req.GetMinProficiency() {
			return false
		}
		for k, v := range req.GetAttributes() {
			if c.GetAttributes()[k] != v {
				return false
			}
		}
		return true
	})
	resp := &meshnodev1.DiscoverResponse{Index: idx}
	for _, a := range agents {
		load := &meshnodev1.AgentLoad{Status: "unknown", SuccessRate: 1}
		if a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_READY {
			load.Status = "ready"
		}
		resp.Agents = append(resp.Agents, &meshnodev1.DiscoveredAgent{Agent: a, Load: load, Capability: capOf(a, req.GetCapability())})
	}
	return resp, nil
}

func (r *registrySvc) Watch(req *meshnodev1.WatchRequest, srv grpc.ServerStreamingServer[meshnodev1.WatchResponse]) error {
	keep := func(a *meshnodev1.Agent) bool {
		return req.GetCapability() == "" || capOf(a, req.GetCapability()) != nil
	}
	from := req.GetFromIndex()
	if from == 0 {
		agents, idx := r.st.snapshot(keep)
		for _, a := range agents {
			if err := srv.Send(&meshnodev1.WatchResponse{Type: meshnodev1.WatchEventType_WATCH_EVENT_TYPE_UPSERT, Agent: a, Index: a.GetModifyIndex()}); err != nil {
				return err
			}
		}
		if err := srv.Send(&meshnodev1.WatchResponse{Type: meshnodev1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT_DONE, Index: idx}); err != nil {
			return err
		}
		from = idx
	}
	for {
		events, changed := r.st.eventsAfter(from)
		for _, ev := range events {
			from = ev.GetIndex()
			if keep(ev.GetAgent()) {
				if err := srv.Send(ev); err != nil {
					return err
				}
			}
		}
		select {
		case <-changed:
		case <-r.st.done:
			return status.Error(codes.Unavailable, "node stopping")
		case <-srv.Context().Done():
			return nil
		}
	}
}

type invokeSvc struct {
	meshnodev1.UnimplementedInvokeServiceServer
	st       *state
	noAttach bool
}

func (v *invokeSvc) Call(ctx context.Context, req *meshnodev1.CallRequest) (*meshnodev1.CallResponse, error) {
	v.st.mu.Lock()
	v.st.calls = append(v.st.calls, proto.Clone(req).(*meshnodev1.CallRequest))
	v.st.mu.Unlock()
	id, err := v.st.pick(req.GetCapability())
	if err != nil {
		return nil, err
	}
	d := &meshnodev1.Delivery{
		Capability:     req.GetCapability(),
		Payload:        req.GetPayload(),
		ContentType:    req.GetContentType(),
		Deadline:       req.GetDeadline(),
		Metadata:       maps.Clone(req.GetMetadata()),
		CallerAgentId:  req.GetCallerAgentId(),
		Attempt:        1,
		IdempotencyKey: req.GetIdempotencyKey(),
	}
	if d.Deadline == nil {
		if dl, ok := ctx.Deadline(); ok {
			d.Deadline = timestamppb.New(dl)
		}
	}
	if c := req.GetCallerAgentId(); c != "" {
		d.Chain = []string{c}
	}
	rr, err := v.st.deliver(ctx, id, d)
	if err != nil {
		return nil, err
	}
	if e := rr.GetError(); e != nil {
		return nil, status.Error(codes.Code(e.GetCode()), e.GetMessage())
	}
	ok := rr.GetOk()
	return &meshnodev1.CallResponse{
		Payload: ok.GetPayload(), ContentType: ok.GetContentType(), Metadata: ok.GetMetadata(),
		AgentId: id, Node: v.st.node, Attempts: 1,
	}, nil
}

func (v *invokeSvc) Serve(req *meshnodev1.ServeRequest, srv grpc.ServerStreamingServer[meshnodev1.ServeResponse]) error {
	v.st.recordServe(req)
	return v.st.hub.Serve(srv.Context(), anyone, req, srv.Send)
}

// Attach is Serve with the answers on the same stream.
func (v *invokeSvc) Attach(srv grpc.BidiStreamingServer[meshnodev1.AttachRequest, meshnodev1.ServeResponse]) error {
	if v.noAttach {
		return status.Error(codes.Unimplemented, "agenttest: Attach is switched off (Node.NoAttach)")
	}
	return v.st.hub.Attach(anyone, &recordingStream{BidiStreamingServer: srv, st: v.st})
}

// recordingStream records what an agent sends on an Attach stream before
// the hub reads it: the serve request that opens it, and votes.
type recordingStream struct {
	grpc.BidiStreamingServer[meshnodev1.AttachRequest, meshnodev1.ServeResponse]
	st     *state
	opened bool
}

func (r *recordingStream) Recv() (*meshnodev1.AttachRequest, error) {
	m, err := r.BidiStreamingServer.Recv()
	if err != nil {
		return m, err
	}
	if req := m.GetServe(); req != nil && !r.opened {
		r.st.recordServe(req)
	}
	if v := m.GetVote(); v != nil {
		r.st.recordVote(v)
	}
	r.opened = true
	return m, nil
}

func (v *invokeSvc) Respond(_ context.Context, req *meshnodev1.RespondRequest) (*meshnodev1.RespondResponse, error) {
	if err := v.st.respond(req); err != nil {
		return nil, err
	}
	v.st.countAnswer(false)
	return &meshnodev1.RespondResponse{}, nil
}

type quorumSvc struct {
	meshnodev1.UnimplementedQuorumServiceServer
	st *state
}

func (q *quorumSvc) Vote(_ context.Context, req *meshnodev1.VoteRequest) (*meshnodev1.VoteResponse, error) {
	if err := q.st.vote(req); err != nil {
		return nil, err
	}
	q.st.countAnswer(false)
	return &meshnodev1.VoteResponse{}, nil
}

type nodeSvc struct {
	meshnodev1.UnimplementedNodeServiceServer
	st *state
}

func (n *nodeSvc) Status(context.Context, *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	return &meshnodev1.StatusResponse{Name: n.st.node, Version: "agenttest", Role: "server"}, nil
}
