package agenttest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// state is one incarnation of the node: Restart replaces it, so nothing
// survives a restart, as with a real node's streams and pending calls. The
// streams, pending calls and vote requests are the hub's, the same code a
// real node runs; the state adds the registry and what tests observe.
type state struct {
	node string
	hub  *hub.Hub

	mu            sync.Mutex
	index         uint64
	agents        map[string]*meshnodev1.Agent
	votes         []*meshnodev1.VoteRequest
	strayAnswers  int
	answered      [2]int // answers (responses and votes) taken: [unary, on an Attach stream]
	events        []*meshnodev1.WatchResponse
	registrations []*meshnodev1.RegisterRequest
	calls         []*meshnodev1.CallRequest
	serveRequests []*meshnodev1.ServeRequest
	changed       chan struct{} // closed and replaced on every change
	done          chan struct{} // closed when the node stops
	closed        bool
}

// anyone is the owner the fake gives every agent: it does not check peer
// credentials, so every process owns every agent.
var anyone hub.Owner

func newState(node string) (*state, error) {
	s := &state{
		node:    node,
		agents:  map[string]*meshnodev1.Agent{},
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	cfg := hub.DefaultConfig()
	cfg.Node = node
	cfg.MaxMessageBytes = maxMessage
	cfg.KeepCallIDs = true // tests choose call ids, and parent calls by them
	cfg.StatusChanged = s.statusChanged
	cfg.OnAnswer = s.streamAnswer
	h, err := hub.New(cfg)
	if err != nil {
		return nil, err
	}
	s.hub = h
	h.Start()
	return s, nil
}

// reincarnate returns the state a restarted node comes back with: the
// registry and its change log survive (a real node keeps them in Raft),
// streams and pending calls do not, and every agent is disconnected until it
// serves again.
func (s *state) reincarnate() (*state, error) {
	n, err := newState(s.node)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n.index, n.events = s.index, s.events
	n.registrations, n.calls, n.serveRequests = s.registrations, s.calls, s.serveRequests
	n.votes, n.strayAnswers, n.answered = s.votes, s.strayAnswers, s.answered
	for id, a := range s.agents {
		a = proto.Clone(a).(*meshnodev1.Agent)
		a.Status = meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED
		n.agents[id] = a
		n.hub.Adopt(id)
	}
	return n, nil
}

// close stops the incarnation: Watch streams end, and the hub ends every
// Serve stream, as a stopping node does.
func (s *state) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.hub.Close()
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
	return s.hub.Serving(s.resolve(id)), s.changed
}

// statusChanged is the hub telling that an agent's stream opened or ended.
func (s *state) statusChanged(id string, st meshnodev1.AgentStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.agents[id]; a != nil {
		a.Status = st
	}
	s.notifyLocked()
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
	s.hub.Claim(id, anyone) // cannot fail: anyone owns every agent
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
	s.hub.Remove(id)
	s.index++
	s.appendEventLocked(meshnodev1.WatchEventType_WATCH_EVENT_TYPE_DELETE, a)
	return s.index, nil
}

func (s *state) appendEventLocked(t meshnodev1.WatchEventType, a *meshnodev1.Agent) {
	s.events = append(s.events, &meshnodev1.WatchResponse{Type: t, Agent: proto.Clone(a).(*meshnodev1.Agent), Index: s.index})
	s.notifyLocked()
}

func (s *state) recordServe(req *meshnodev1.ServeRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serveRequests = append(s.serveRequests, proto.Clone(req).(*meshnodev1.ServeRequest))
}

func (s *state) recordVote(req *meshnodev1.VoteRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.votes = append(s.votes, proto.Clone(req).(*meshnodev1.VoteRequest))
}

// deliver pushes d onto the agent's stream and waits for its Respond.
func (s *state) deliver(ctx context.Context, agentID string, d *meshnodev1.Delivery) (*meshnodev1.RespondRequest, error) {
	return s.hub.Deliver(ctx, s.resolve(agentID), proto.Clone(d).(*meshnodev1.Delivery), hub.CallContext{})
}

// askVote pushes a vote request onto the agent's stream and waits for the
// agent's Vote.
func (s *state) askVote(ctx context.Context, agentID string, ask *meshnodev1.VoteAsk) (*meshnodev1.VoteRequest, error) {
	return s.hub.Ask(ctx, s.resolve(agentID), proto.Clone(ask).(*meshnodev1.VoteAsk))
}

func (s *state) vote(req *meshnodev1.VoteRequest) error {
	s.recordVote(req)
	return s.hub.Vote(context.Background(), s.resolve(req.GetVote().GetVoterAgentId()), req)
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
	err := s.hub.Respond(s.resolve(req.GetAgentId()), req)
	s.countStray(err)
	return err
}

// streamAnswer is the hub telling what became of an answer sent on an
// Attach stream.
func (s *state) streamAnswer(_ string, m *meshnodev1.AttachRequest, err error) {
	if err == nil {
		s.countAnswer(true)
	} else if m.GetRespond() != nil {
		s.countStray(err)
	}
}

// countStray counts an answer for a call nobody was waiting for.
func (s *state) countStray(err error) {
	if errors.Is(err, hub.ErrCallNotPending) {
		s.mu.Lock()
		s.strayAnswers++
		s.mu.Unlock()
	}
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
		if s.hub.Serving(id) {
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
