package hub

import (
	"strings"
	"sync/atomic"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// agent is one agent attached to this node.
type agent struct {
	owner Owner
	serve *stream // nil while no Serve stream is open
	// lostAt is when the stream went away; the agent is deregistered after
	// the grace period unless a new stream opens.
	lostAt time.Time
}

// stream is one open Serve (or Attach) stream.
type stream struct {
	out      chan *meshnodev1.ServeResponse
	done     chan struct{} // closed when the stream ends or the agent is removed
	removed  bool          // done was closed by Remove
	inFlight atomic.Int32
	limit    int32
}

// Load is one local agent's share of the node's load report.
type Load struct {
	ID                 string
	Ready              bool // a Serve stream is open
	InFlight, Capacity uint32
}

// AgentID is the cluster-wide id of a local agent's name (an id is kept).
func (h *Hub) AgentID(nameOrID string) string {
	if strings.Contains(nameOrID, "/") {
		return nameOrID
	}
	return h.cfg.Node + "/" + nameOrID
}

// Claim records o as the owner of agent id, the step before registering it.
// It fails if another process that is still alive owns it.
func (h *Hub) Claim(id string, o Owner) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[id]
	if ok && a.owner.PID != o.PID && h.cfg.ProcessAlive(a.owner.PID) {
		return errorf(ErrClaimed, "agent %s is owned by another live process (%s); stop it or choose another name", id, a.owner)
	}
	if !ok {
		a = &agent{}
		h.agents[id] = a
	}
	a.owner = o
	return nil
}

// Owned returns nil if o owns agent id.
func (h *Hub) Owned(id string, o Owner) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.ownedLocked(id, o)
	return err
}

func (h *Hub) ownedLocked(id string, o Owner) (*agent, error) {
	a, ok := h.agents[id]
	if !ok {
		return nil, errorf(ErrNotRegistered, "agent %s is not registered on node %s; call Register first", id, h.cfg.Node)
	}
	if a.owner.PID != o.PID || a.owner.UID != o.UID {
		return nil, errorf(ErrNotOwner, "agent %s belongs to another process (%s); a process may only act for agents it registered", id, a.owner)
	}
	return a, nil
}

// OwnedBy returns an agent o owns ("" if none): the proposer of a quorum
// proposal made by an agent process.
func (h *Hub) OwnedBy(o Owner) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, a := range h.agents {
		if a.owner.PID == o.PID && a.owner.UID == o.UID {
			return id
		}
	}
	return ""
}

// Remove forgets an agent (it was deregistered) and ends its stream.
func (h *Hub) Remove(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.agents[id]; ok && a.serve != nil {
		a.serve.removed = true
		close(a.serve.done)
	}
	delete(h.agents, id)
}

// Adopt records an agent found in the registry at start, owned by no live
// process: it is deregistered after the grace period unless its process
// registers it again. An agent already known is left alone.
func (h *Hub) Adopt(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.agents[id]; ok {
		return
	}
	h.agents[id] = &agent{lostAt: h.clock.Now()}
}

// Serving reports whether a local agent has an open Serve stream.
func (h *Hub) Serving(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[id]
	return ok && a.serve != nil
}

// Snapshot returns every local agent's load, for gossip load reports.
func (h *Hub) Snapshot() []Load {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Load, 0, len(h.agents))
	for id, a := range h.agents {
		out = append(out, a.load(id))
	}
	return out
}

// Load is one agent's entry of Snapshot.
func (h *Hub) Load(id string) (Load, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[id]
	if !ok {
		return Load{}, false
	}
	return a.load(id), true
}

func (a *agent) load(id string) Load {
	l := Load{ID: id}
	if a.serve != nil {
		l.Ready = true
		l.InFlight = uint32(a.serve.inFlight.Load())
		l.Capacity = uint32(a.serve.limit)
	}
	return l
}

// openServe attaches a stream to an owned agent.
func (h *Hub) openServe(id string, o Owner, limit int32) (*stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, err := h.ownedLocked(id, o)
	if err != nil {
		return nil, err
	}
	if a.serve != nil {
		return nil, errorf(ErrAlreadyServing, "agent %s already has an open Serve stream; one stream per agent", id)
	}
	s := &stream{out: make(chan *meshnodev1.ServeResponse, h.cfg.StreamBuffer), done: make(chan struct{}), limit: limit}
	a.serve = s
	a.lostAt = time.Time{}
	return s, nil
}

// closeServe detaches s if it is still the agent's stream and reports
// whether it was.
func (h *Hub) closeServe(id string, s *stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[id]
	if !ok || a.serve != s {
		return false
	}
	a.serve = nil
	a.lostAt = h.clock.Now()
	close(s.done)
	return true
}

// streamOf returns the agent's open stream, or nil.
func (h *Hub) streamOf(id string) *stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.agents[id]; ok {
		return a.serve
	}
	return nil
}

// expired lists agents whose stream has been gone longer than the grace.
func (h *Hub) expired(now time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, a := range h.agents {
		if a.serve == nil && !a.lostAt.IsZero() && now.Sub(a.lostAt) > h.cfg.DisconnectGrace {
			out = append(out, id)
		}
	}
	return out
}
