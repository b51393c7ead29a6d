package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// localAgents tracks the agents attached to this node: who owns each one
// (the registering process's kernel credentials), its Serve stream, and the
// calls delivered to it that wait for a Respond.
type localAgents struct {
	node string

	mu      sync.Mutex
	agents  map[string]*localAgent // by agent id
	pending map[string]*pendingCall
}

// localAgent is one agent attached to this node.
type localAgent struct {
	id     string
	owner  PeerCred
	record *meshnodev1.Agent
	serve  *serveConn // nil while no Serve stream is open
	// lostAt is when the Serve stream went away; the agent is deregistered
	// after the grace period unless a new stream opens.
	lostAt time.Time
}

// serveConn is one open Serve stream.
type serveConn struct {
	out      chan *meshnodev1.ServeResponse
	done     chan struct{}
	inFlight atomic.Int32
	limit    int32
}

// pendingCall is a delivered call waiting for the agent's Respond.
type pendingCall struct {
	agentID  string
	delivery *meshnodev1.Delivery
	result   chan *meshnodev1.RespondRequest
	// chain and deadline of the call, inherited by calls the handler makes.
	chain    []string
	hops     uint32
	deadline time.Time
}

func newLocalAgents(node string) *localAgents {
	return &localAgents{node: node, agents: map[string]*localAgent{}, pending: map[string]*pendingCall{}}
}

// agentID is the cluster-wide id of a local agent name.
func (l *localAgents) agentID(nameOrID string) string {
	if strings.Contains(nameOrID, "/") {
		return nameOrID
	}
	return l.node + "/" + nameOrID
}

// processAlive reports whether pid still exists. Used to let a restarted
// agent process take over its name from a dead predecessor, never from a
// live one.
func processAlive(pid int32) bool {
	if pid <= 0 {
		return false
	}
	_, err := os.Stat("/proc/" + strconv.Itoa(int(pid)))
	return err == nil
}

// claim checks that cred may register id and records it as the owner.
func (l *localAgents) claim(id string, cred PeerCred) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.agents[id]
	if ok && a.owner.PID != cred.PID && processAlive(a.owner.PID) {
		return status.Errorf(codes.AlreadyExists, "agent %s is owned by another live process (%s); stop it or choose another name", id, a.owner)
	}
	if !ok {
		a = &localAgent{id: id}
		l.agents[id] = a
	}
	a.owner = cred
	return nil
}

// setRecord stores the committed registration.
func (l *localAgents) setRecord(rec *meshnodev1.Agent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.agents[rec.GetId()]; ok {
		a.record = rec
	}
}

// owned returns the agent if cred owns it.
func (l *localAgents) owned(id string, cred PeerCred) (*localAgent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.agents[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "agent %s is not registered on node %s; call Register first", id, l.node)
	}
	if a.owner.PID != cred.PID || a.owner.UID != cred.UID {
		return nil, status.Errorf(codes.PermissionDenied, "agent %s belongs to another process (%s); a process may only act for agents it registered", id, a.owner)
	}
	return a, nil
}

// remove forgets an agent and fails its pending calls.
func (l *localAgents) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.agents[id]; ok && a.serve != nil {
		close(a.serve.done)
	}
	delete(l.agents, id)
}

// openServe attaches a Serve stream to an owned agent.
func (l *localAgents) openServe(id string, cred PeerCred, limit int32) (*serveConn, error) {
	a, err := l.owned(id, cred)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.serve != nil {
		return nil, status.Errorf(codes.AlreadyExists, "agent %s already has an open Serve stream; one stream per agent", id)
	}
	sc := &serveConn{out: make(chan *meshnodev1.ServeResponse, 256), done: make(chan struct{}), limit: limit}
	a.serve = sc
	a.lostAt = time.Time{}
	return sc, nil
}

// closeServe detaches sc if it is still the agent's stream and reports
// whether it was.
func (l *localAgents) closeServe(id string, sc *serveConn, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.agents[id]
	if !ok || a.serve != sc {
		return false
	}
	a.serve = nil
	a.lostAt = now
	select {
	case <-sc.done:
	default:
		close(sc.done)
	}
	return true
}

// expired lists agents whose stream has been gone longer than grace.
func (l *localAgents) expired(now time.Time, grace time.Duration) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id, a := range l.agents {
		if a.serve == nil && !a.lostAt.IsZero() && now.Sub(a.lostAt) > grace {
			out = append(out, id)
		}
	}
	return out
}

// snapshot returns (id, in flight, capacity, ready) for every local agent,
// for gossip load reports.
func (l *localAgents) snapshot() []localLoad {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]localLoad, 0, len(l.agents))
	for id, a := range l.agents {
		out = append(out, a.loadLocked(id))
	}
	return out
}

// load is one agent's entry of snapshot.
func (l *localAgents) load(id string) (localLoad, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.agents[id]
	if !ok {
		return localLoad{}, false
	}
	return a.loadLocked(id), true
}

func (a *localAgent) loadLocked(id string) localLoad {
	ll := localLoad{id: id}
	if a.serve != nil {
		ll.ready = true
		ll.inFlight = uint32(a.serve.inFlight.Load())
		ll.capacity = uint32(a.serve.limit)
	}
	return ll
}

type localLoad struct {
	id                 string
	ready              bool
	inFlight, capacity uint32
}

func newCallID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// deliver pushes a call onto the agent's Serve stream and waits for its
// Respond, the caller's cancellation or the stream's end.
func (l *localAgents) deliver(ctx context.Context, agentID string, d *meshnodev1.Delivery, chain []string, hops uint32, deadline time.Time) (*meshnodev1.RespondRequest, error) {
	l.mu.Lock()
	a, ok := l.agents[agentID]
	var sc *serveConn
	if ok {
		sc = a.serve
	}
	if sc == nil {
		l.mu.Unlock()
		return nil, status.Errorf(codes.Unavailable, "agent %s is not serving on node %s", agentID, l.node)
	}
	if sc.limit > 0 && sc.inFlight.Load() >= sc.limit {
		l.mu.Unlock()
		return nil, status.Errorf(codes.ResourceExhausted, "agent %s is busy: %d calls in flight, its limit", agentID, sc.limit)
	}
	d.CallId = newCallID()
	pc := &pendingCall{agentID: agentID, delivery: d, result: make(chan *meshnodev1.RespondRequest, 1), chain: chain, hops: hops, deadline: deadline}
	l.pending[d.CallId] = pc
	sc.inFlight.Add(1)
	l.mu.Unlock()

	defer func() {
		l.mu.Lock()
		delete(l.pending, d.CallId)
		l.mu.Unlock()
		sc.inFlight.Add(-1)
	}()
	select {
	case sc.out <- &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Call{Call: d}}:
	case <-sc.done:
		return nil, status.Errorf(codes.Unavailable, "agent %s stopped serving before the call was delivered", agentID)
	case <-ctx.Done():
		return nil, ctxStatus(ctx, "delivering to "+agentID)
	}
	select {
	case r := <-pc.result:
		return r, nil
	case <-sc.done:
		return nil, status.Errorf(codes.Unavailable, "agent %s stopped serving while handling call %s", agentID, d.CallId)
	case <-ctx.Done():
		// Tell the handler to stop; best effort, the stream may be full.
		select {
		case sc.out <- &meshnodev1.ServeResponse{Event: &meshnodev1.ServeResponse_Cancel{Cancel: &meshnodev1.CallCancel{CallId: d.CallId, Reason: ctx.Err().Error()}}}:
		default:
		}
		return nil, ctxStatus(ctx, "waiting for "+agentID)
	}
}

// respond routes an agent's answer to the waiting call.
func (l *localAgents) respond(agentID string, r *meshnodev1.RespondRequest) error {
	l.mu.Lock()
	pc, ok := l.pending[r.GetCallId()]
	l.mu.Unlock()
	if !ok || pc.agentID != agentID {
		return status.Errorf(codes.NotFound, "call %q is not pending for agent %s: it was answered, cancelled or timed out", r.GetCallId(), agentID)
	}
	select {
	case pc.result <- r:
		return nil
	default:
		return status.Errorf(codes.AlreadyExists, "call %s was already answered", r.GetCallId())
	}
}

// parent returns the pending call a handler is working on, so a call it
// makes inherits the chain and the deadline.
func (l *localAgents) parent(callID string) (*pendingCall, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pc, ok := l.pending[callID]
	return pc, ok
}

// ctxStatus converts a context's end into the matching gRPC status.
func ctxStatus(ctx context.Context, doing string) error {
	if ctx.Err() == context.DeadlineExceeded {
		return status.Errorf(codes.DeadlineExceeded, "deadline passed while %s", doing)
	}
	return status.Errorf(codes.Canceled, "caller cancelled while %s", doing)
}

// serving reports whether a local agent has an open Serve stream.
func (l *localAgents) serving(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.agents[id]
	return ok && a.serve != nil
}

func itoa(i int) string { return strconv.Itoa(i) }

// push sends an event (a vote request) on an agent's Serve stream.
func (l *localAgents) push(ctx context.Context, agentID string, ev *meshnodev1.ServeResponse) error {
	l.mu.Lock()
	a, ok := l.agents[agentID]
	var sc *serveConn
	if ok {
		sc = a.serve
	}
	l.mu.Unlock()
	if sc == nil {
		return status.Errorf(codes.Unavailable, "agent %s is not serving on node %s", agentID, l.node)
	}
	select {
	case sc.out <- ev:
		return nil
	case <-sc.done:
		return status.Errorf(codes.Unavailable, "agent %s stopped serving", agentID)
	case <-ctx.Done():
		return ctxStatus(ctx, "sending to "+agentID)
	}
}

// adopt records an agent found in the registry at start, owned by no live
// process: it is deregistered after the grace period unless its process
// registers it again.
func (l *localAgents) adopt(rec *meshnodev1.Agent, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.agents[rec.GetId()]; ok {
		return
	}
	l.agents[rec.GetId()] = &localAgent{id: rec.GetId(), record: rec, lostAt: now}
}

// ownedBy returns an agent the process owns ("" if none): the proposer of
// a quorum proposal made by an agent process.
func (l *localAgents) ownedBy(cred PeerCred) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, a := range l.agents {
		if a.owner.PID == cred.PID && a.owner.UID == cred.UID {
			return id
		}
	}
	return ""
}
