package agenttest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// state is one incarnation of the node: Restart replaces it, so nothing
// survives a restart, as with a real node's streams and pending calls.
type state struct {
	node string

	mu            sync.Mutex
	index         uint64
	agents        map[string]*meshnodev1.Agent
	streams       map[string]*serveStream
	pending       map[string]*pendingCall
	pendingVotes  map[string]*pendingVote
	votes         []*meshnodev1.VoteRequest
	strayAnswers  int
	answered      [2]int // answers (responses and votes) taken: [unary, on an Attach stream]
	events        []*meshnodev1.WatchResponse
	registrations []*meshnodev1.RegisterRequest
	calls         []*meshnodev1.CallRequest
	serveRequests []*meshnodev1.ServeRequest
	nextCall      uint64
	changed       chan struct{} // closed and replaced on every change
	done          chan struct{} // closed when the node stops
	closed        bool
}

type serveStream struct {
	out   chan *meshnodev1.ServeResponse
	gone  chan struct{}
	ready bool
}

type pendingVote struct {
	agentID string
	vote    chan *meshnodev1.VoteRequest
}

type pendingCall struct {
	agentID string
	answer  chan *meshnodev1.RespondRequest
}

func newState(node string) *state {
	return &state{
		node:         node,
		agents:       map[string]*meshnodev1.Agent{},
		streams:      map[string]*serveStream{},
		pending:      map[string]*pendingCall{},
		pendingVotes: map[string]*pendingVote{},
		changed:      make(chan struct{}),
		done:         make(chan struct{}),
	}
}

// reincarnate returns the state a restarted node comes back with: the
// registry and its change log survive (a real node keeps them in Raft),
// streams and pending calls do not, and every agent is disconnected until it
// serves again.
func (s *state) reincarnate() *state {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := newState(s.node)
	n.index, n.events, n.nextCall = s.index, s.events, s.nextCall
	n.registrations, n.calls, n.serveRequests = s.registrations, s.calls, s.serveRequests
	n.votes, n.strayAnswers, n.answered = s.votes, s.strayAnswers, s.answered
	for id, a := range s.agents {
		a = proto.Clone(a).(*meshnodev1.Agent)
		a.Status = meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED
		n.agents[id] = a
	}
	return n
}

func (s *state) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}

func (s *state) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// notifyLocked wakes every waiter (WaitReady, Watch).
func (s *state) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *state) resolve(id string) string {
	if strings.Contains(id, "/") {
		return id
	}
	return s.node + "/" + id
}

func (s *state) isReady(id string) (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[s.resolve(id)]
	return st != nil && st.ready, s.changed
}

func (s *state) register(req *meshnodev1.RegisterRequest) (*meshnodev1.Agent, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registrations = append(s.registrations, proto.Clone(req).(*meshnodev1.RegisterRequest))
	if req.GetName() == "" {
		return nil, 0, status.Error(codes.InvalidArgument, "agent name is empty")
	}
	id := s.resolve(req.GetName())
	s.index++
	a := &meshnodev1.Agent{
		Id: id, Name: req.GetName(), Node: s.node,
		Roles: req.GetRoles(), Capabilities: req.GetCapabilities(), VotePublicKey: req.GetVotePublicKey(),
		Status: meshnodev1.AgentStatus_AGENT_STATUS_REGISTERED, ModifyIndex: s.index, CreateIndex: s.index,
	}
	if old, ok := s.agents[id]; ok {
		a.CreateIndex = old.GetCreateIndex()
		a.Status = old.GetStatus()
	}
	s.agents[id] = a
	s.appendEventLocked(meshnodev1.WatchEventType_WATCH_EVENT_TYPE_UPSERT, a)
	return a, s.index, nil
}

func (s *state) deregister(id string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.resolve(id)
	a, ok := s.agents[id]
	if !ok {
		return 0, status.Errorf(codes.NotFound, "agent %q is not registered", id)
	}
	delete(s.agents, id)
	s.index++
	s.appendEventLocked(meshnodev1.WatchEventType_WATCH_EVENT_TYPE_DELETE, a)
	return s.index, nil
}

func (s *state) appendEventLocked(t meshnodev1.WatchEventType, a *meshnodev1.Agent) {
	s.events = append(s.events, &meshnodev1.WatchResponse{Type: t, Agent: proto.Clone(a).(*meshnodev1.Agent), Index: s.index})
	s.notifyLocked()
}

// openStream claims the agent's Serve slot; only one stream per agent.
func (s *state) openStream(req *meshnodev1.ServeRequest) (string, *serveStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serveRequests = append(s.serveRequests, proto.Clone(req).(*meshnodev1.ServeRequest))
	id := s.resolve(req.GetAgentId())
	if _, ok := s.agents[id]; !ok {
		return "", nil, status.Errorf(codes.NotFound, "agent %q is not registered: call Register first", id)
	}
	if _, busy := s.streams[id]; busy {
		return "", nil, status.Errorf(codes.AlreadyExists, "agent %q already has a Serve stream", id)
	}
	st := &serveStream{out: make(chan *meshnodev1.ServeResponse, 64), gone: make(chan struct{})}
	s.streams[id] = st
	return id, st, nil
}

func (s *state) setReady(id string, st *serveStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.ready = true
	if a := s.agents[id]; a != nil {
		a.Status = meshnodev1.AgentStatus_AGENT_STATUS_READY
	}
	s.notifyLocked()
}

func (s *state) closeStream(id string, st *serveStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(st.gone)
	if s.streams[id] == st {
		delete(s.streams, id)
	}
	if a := s.agents[id]; a != nil {
		a.Status = meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED
	}
	s.notifyLocked()
}

// readyStreamLocked returns the agent's id and ready Serve stream; s.mu is
// held.
func (s *state) readyStreamLocked(agentID string) (string, *serveStream, error) {
	id := s.resolve(agentID)
	st := s.streams[id]
	if st == nil || !st.ready {
		return id, nil, status.Errorf(codes.Unavailable, "agent %q has no ready Serve stream", id)
	}
	return id, st, nil
}

// push sends ev on st unless the agent goes away (goneErr) or ctx ends.
func push(ctx context.Context, st *serveStream, ev *meshnodev1.ServeResponse, goneErr error) error {
	select {
	case st.out <- ev:
		return nil
	case <-st.gone:
		return goneErr
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// deliver pushes d onto the agent's stream and waits for its Respond.
func (s *state) deliver(ctx context.Context, agentID string, d *meshnodev1.Delivery) (*meshnodev1.RespondRequest, error) {
	s.mu.Lock()
	id, st, err := s.readyStreamLocked(agentID)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	d = proto.Clone(d).(*meshnodev1.Delivery)
	if d.CallId == "" {
		s.nextCall++
		d.CallId = fmt.Sprintf("call-%d", s.nextCall)
	}
	pc := &pendingCall{agentID: id, answer: make(chan *meshnodev1.RespondRequest, 1)}
	s.pending[d.CallId] = pc
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, d.CallId)
		s.mu.Unlock()
	}()
	if err := push(ctx, st, &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Call{Call: d}},
		status.Errorf(codes.Unavailable, "agent %q went away before call %s was delivered", id, d.CallId)); err != nil {
		return nil, err
	}
	select {
	case r := <-pc.answer:
		return r, nil
	case <-st.gone:
		return nil, status.Errorf(codes.Unavailable, "agent %q went away while handling call %s", id, d.CallId)
	case <-ctx.Done():
		// Withdraw the call, as a real node does; best effort.
		select {
		case st.out <- &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Cancel{
			Cancel: &meshnodev1.CallCancel{CallId: d.CallId, Reason: ctx.Err().Error()}}}:
		default:
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// askVote pushes a vote request onto the agent's stream and waits for the
// agent's Vote.
func (s *state) askVote(ctx context.Context, agentID string, ask *meshnodev1.VoteAsk) (*meshnodev1.VoteRequest, error) {
	s.mu.Lock()
	id, st, err := s.readyStreamLocked(agentID)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	ask = proto.Clone(ask).(*meshnodev1.VoteAsk)
	if ask.RequestId == "" {
		s.nextCall++
		ask.RequestId = fmt.Sprintf("vote-%d", s.nextCall)
	}
	pv := &pendingVote{agentID: id, vote: make(chan *meshnodev1.VoteRequest, 1)}
	s.pendingVotes[ask.RequestId] = pv
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pendingVotes, ask.RequestId)
		s.mu.Unlock()
	}()
	if err := push(ctx, st, &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Vote{Vote: ask}},
		status.Errorf(codes.Unavailable, "agent %q went away", id)); err != nil {
		return nil, err
	}
	select {
	case v := <-pv.vote:
		return v, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (s *state) vote(req *meshnodev1.VoteRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.votes = append(s.votes, proto.Clone(req).(*meshnodev1.VoteRequest))
	pv, ok := s.pendingVotes[req.GetRequestId()]
	if !ok {
		return status.Errorf(codes.NotFound, "vote request %q is not pending", req.GetRequestId())
	}
	if req.GetVote().GetVoterAgentId() != pv.agentID {
		return status.Errorf(codes.PermissionDenied, "vote request %q was sent to %q, not %q", req.GetRequestId(), pv.agentID, req.GetVote().GetVoterAgentId())
	}
	delete(s.pendingVotes, req.GetRequestId())
	pv.vote <- req
	return nil
}

func (s *state) countAnswer(onStream bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if onStream {
		s.answered[1]++
	} else {
		s.answered[0]++
	}
}

func (s *state) respond(req *meshnodev1.RespondRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pc, ok := s.pending[req.GetCallId()]
	if !ok {
		s.strayAnswers++
		return status.Errorf(codes.NotFound, "no call %q is waiting for an answer (answered already, or the caller gave up)", req.GetCallId())
	}
	if s.resolve(req.GetAgentId()) != pc.agentID {
		return status.Errorf(codes.PermissionDenied, "call %q was delivered to %q, not %q", req.GetCallId(), pc.agentID, req.GetAgentId())
	}
	delete(s.pending, req.GetCallId())
	pc.answer <- req
	return nil
}

// pick returns the first ready agent offering capability, by id.
func (s *state) pick(capability string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	offered := false
	for _, id := range slices.Sorted(maps.Keys(s.agents)) {
		if capOf(s.agents[id], capability) == nil {
			continue
		}
		offered = true
		if st := s.streams[id]; st != nil && st.ready {
			return id, nil
		}
	}
	if !offered {
		return "", status.Errorf(codes.NotFound, "no agent offers capability %q", capability)
	}
	return "", status.Errorf(codes.Unavailable, "no ready agent for capability %q: none has an open Serve stream", capability)
}

func capOf(a *meshnodev1.Agent, name string) *meshnodev1.Capability {
	for _, c := range a.GetCapabilities() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// snapshot returns copies of the agents matching keep, sorted by id, and the
// current index.
func (s *state) snapshot(keep func(*meshnodev1.Agent) bool) ([]*meshnodev1.Agent, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*meshnodev1.Agent
	for _, id := range slices.Sorted(maps.Keys(s.agents)) {
		if a := s.agents[id]; keep(a) {
			out = append(out, proto.Clone(a).(*meshnodev1.Agent))
		}
	}
	return out, s.index
}

// eventsAfter returns the logged changes after index, and a channel closed
// at the next change.
func (s *state) eventsAfter(index uint64) ([]*meshnodev1.WatchResponse, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.events, index+1, func(e *meshnodev1.WatchResponse, idx uint64) int {
		switch {
		case e.GetIndex() < idx:
			return -1
		case e.GetIndex() > idx:
			return 1
		}
		return 0
	})
	return slices.Clone(s.events[i:]), s.changed
}
