package authzgate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/authz"
	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Registry is the local replica. *consensus.Store implements it.
type Registry interface {
	// Index is the last applied index; cheap (an atomic load).
	Index() uint64
	AuthzPolicy(ctx context.Context, opts consensus.ReadOptions) (*meshnodev1.AuthzPolicyRecord, error)
	Agent(ctx context.Context, opts consensus.ReadOptions, id string) (*meshnodev1.Agent, uint64, error)
}

// Gate answers authorization questions from the local replica. Safe for
// concurrent use; the zero-config policy (none stored) costs one atomic
// load per call.
type Gate struct {
	reg Registry
	cur atomic.Pointer[view]
	mu  sync.Mutex // serialises refreshes, so a new index compiles once
}

// view is what the gate knows as of one applied index.
type view struct {
	index    uint64
	engine   *authz.Engine
	subjects sync.Map // agent id -> authz.Principal, roles granted by engine
	n        atomic.Int32
}

// maxSubjects bounds a view's memory of agents; past it lookups are not
// remembered (each costs a registry read).
const maxSubjects = 16384

// New returns a gate over reg.
func New(reg Registry) *Gate { return &Gate{reg: reg} }

// errNoStore: the replica could not be read; callers refuse rather than
// guess, except that no policy at all means allow.
var errNoStore = errors.New("authorization policy unreadable")

// current is the view at the replica's applied index, refreshed when the
// index moved. Only a new policy version is recompiled.
func (g *Gate) current(ctx context.Context) (*view, error) {
	idx := g.reg.Index()
	if v := g.cur.Load(); v != nil && v.index == idx {
		return v, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.cur.Load()
	if old != nil && old.index == idx {
		return old, nil
	}
	rec, err := g.reg.AuthzPolicy(ctx, consensus.ReadOptions{})
	if err != nil {
		return nil, errors.Join(errNoStore, err)
	}
	var e *authz.Engine
	if old != nil && old.engine.Version() == rec.GetModifyIndex() {
		e = old.engine
	} else if e, err = authz.Compile(rec.GetPolicy(), rec.GetModifyIndex()); err != nil {
		// The state machine validated it; only an engine change gets here.
		return nil, errors.Join(errNoStore, err)
	}
	v := &view{index: idx, engine: e}
	g.cur.Store(v)
	return v, nil
}

// Engine is the compiled policy in force.
func (g *Gate) Engine(ctx context.Context) (*authz.Engine, error) {
	v, err := g.current(ctx)
	if err != nil {
		return nil, err
	}
	return v.engine, nil
}

// principal is agent id as the policy sees it, with the roles the bindings
// grant it over its id and its owner's uid (when the registry has its
// record), resolved once per applied index.
func (g *Gate) principal(ctx context.Context, v *view, id string) authz.Principal {
	if id == "" {
		return authz.Principal{}
	}
	if p, ok := v.subjects.Load(id); ok {
		return p.(authz.Principal)
	}
	s := authz.Subject{ID: id}
	if a, _, err := g.reg.Agent(ctx, consensus.ReadOptions{}, id); err == nil && a != nil {
		s = consensus.AuthzSubject(a)
	}
	p := v.engine.Resolve(s)
	if v.n.Add(1) <= maxSubjects {
		v.subjects.Store(id, p)
	}
	return p
}

// AuthorizeCall decides a call from caller (a verified agent id, "" for a
// process that named none) to capability, answered by callee: the call
// rules, and the serve rules for the callee (an agent registered before a
// serve rule existed still cannot answer). A refusal is PermissionDenied
// naming the rule that decided.
func (g *Gate) AuthorizeCall(ctx context.Context, caller, capability, callee string) error {
	v, err := g.current(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "authorizing %s -> %s: %v", caller, capability, err)
	}
	if v.engine.Empty() {
		return nil
	}
	to := g.principal(ctx, v, callee)
	if d := v.engine.CallAs(g.principal(ctx, v, caller), capability, &to); !d.Allowed {
		who := caller
		if who == "" {
			who = "a process that named no agent"
		}
		return status.Errorf(codes.PermissionDenied, "call from %s to %s (agent %s) denied by %s", who, capability, callee, d.Rule)
	}
	if d := v.engine.ServeAs(to, capability); !d.Allowed {
		return status.Errorf(codes.PermissionDenied, "agent %s may not serve %s: %s", callee, capability, d.Rule)
	}
	return nil
}

// Check is `meshnode authz check`: the decision for from calling
// capability (answered by to, if named), and the roles from holds.
func (g *Gate) Check(ctx context.Context, from, capability, to string) (authz.Decision, []string, error) {
	v, err := g.current(ctx)
	if err != nil {
		return authz.Decision{}, nil, err
	}
	caller := g.principal(ctx, v, from)
	var callee *authz.Principal
	if to != "" {
		p := g.principal(ctx, v, to)
		callee = &p
	}
	d := v.engine.CallAs(caller, capability, callee)
	if d.Allowed && callee != nil {
		if s := v.engine.ServeAs(*callee, capability); !s.Allowed {
			d = s
		}
	}
	return d, caller.Roles, nil
}
