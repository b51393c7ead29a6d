package api

import (
	"context"
	"errors"
	"log/slog"
	"sort"

	"github.com/agentmesh/meshnode/authz"
	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	"github.com/agentmesh/meshnode/internal/catalog"
	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Registry serves RegistryService: this node's agents register and
// deregister through it, and anyone lists, discovers and watches.
type Registry struct {
	meshnodev1.UnimplementedRegistryServiceServer
	node    string
	store   *consensus.Store
	hub     *hub.Hub
	catalog *catalog.Catalog
	log     *slog.Logger
}

// NewRegistry returns the registry service of node.
func NewRegistry(node string, st *consensus.Store, h *hub.Hub, cat *catalog.Catalog, log *slog.Logger) *Registry {
	return &Registry{node: node, store: st, hub: h, catalog: cat, log: log}
}

// Register records the calling process's agent <node>/<name>; the process
// owns it from then on.
func (r *Registry) Register(ctx context.Context, req *meshnodev1.RegisterRequest) (*meshnodev1.RegisterResponse, error) {
	owner, err := callerOwner(ctx)
	if err != nil {
		return nil, err
	}
	if err := ValidateRegistration(req); err != nil {
		return nil, err
	}
	id := r.node + "/" + req.GetName()
	if err := r.hub.Claim(id, owner); err != nil {
		return nil, err
	}
	rec := &meshnodev1.Agent{
		Id:            id,
		Name:          req.GetName(),
		Node:          r.node,
		Roles:         req.GetRoles(),
		Capabilities:  req.GetCapabilities(),
		VotePublicKey: req.GetVotePublicKey(),
		Status:        meshnodev1.AgentStatus_AGENT_STATUS_REGISTERED,
		OwnerUid:      owner.UID,
		OwnerPid:      owner.PID,
	}
	if old, _, err := r.store.Agent(ctx, consensus.ReadOptions{}, id); err == nil &&
		old.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_READY && r.hub.Serving(id) {
		// An agent re-registering while it serves stays ready. Its
		// equivocation flag is kept by the FSM: re-registering never
		// clears it.
		rec.Status = old.GetStatus()
	}
	wctx, cancel := boundWrite(ctx)
	defer cancel()
	committed, idx, err := r.store.RegisterAgent(wctx, rec)
	if err != nil {
		return nil, apierror.Wrap("register agent "+id, err)
	}
	r.log.Info("agent registered", "agent", id, "capabilities", len(rec.Capabilities), "owner", owner.String(), "index", idx)
	return &meshnodev1.RegisterResponse{Agent: committed, Index: idx, GrantedRoles: r.grantedRoles(ctx, committed)}, nil
}

// Deregister removes an agent the calling process owns. An agent whose
// record is gone already answers NotFound, and the hub forgets it too.
func (r *Registry) Deregister(ctx context.Context, req *meshnodev1.DeregisterRequest) (*meshnodev1.DeregisterResponse, error) {
	owner, err := callerOwner(ctx)
	if err != nil {
		return nil, err
	}
	id := r.hub.AgentID(req.GetAgentId())
	if err := r.hub.Owned(id, owner); err != nil {
		return nil, err
	}
	idx, err := r.deregister(ctx, id)
	if err != nil {
		return nil, apierror.Wrap("deregister agent "+id, err)
	}
	return &meshnodev1.DeregisterResponse{Index: idx}, nil
}

// Reap deregisters an agent whose stream stayed away past its grace: the
// hub's Deregister hook. An agent whose record is already gone is done,
// not an error: the hub would otherwise retry it every second forever.
func (r *Registry) Reap(ctx context.Context, id string) error {
	_, err := r.deregister(ctx, id)
	if errors.Is(err, consensus.ErrNotFound) {
		return nil
	}
	return err
}

func (r *Registry) deregister(ctx context.Context, id string) (uint64, error) {
	wctx, cancel := boundWrite(ctx)
	defer cancel()
	_, idx, err := r.store.DeregisterAgent(wctx, id)
	if err != nil && !errors.Is(err, consensus.ErrNotFound) {
		return 0, err
	}
	r.hub.Remove(id)
	if err != nil {
		return 0, err
	}
	r.log.Info("agent deregistered", "agent", id, "index", idx)
	return idx, nil
}

// ListAgents lists the registry, sorted by id.
func (r *Registry) ListAgents(ctx context.Context, req *meshnodev1.ListAgentsRequest) (*meshnodev1.ListAgentsResponse, error) {
	agents, idx, err := r.store.Agents(ctx, readOpts(req.GetConsistency()), consensus.AgentFilter{Capability: req.GetCapability(), Node: req.GetNode()})
	if err != nil {
		return nil, apierror.Wrap("list agents", err)
	}
	sort.Slice(agents, func(i, j int) bool { return agents[i].GetId() < agents[j].GetId() })
	return &meshnodev1.ListAgentsResponse{Agents: agents, Index: idx}, nil
}

// Discover lists the agents offering a capability with the wanted
// proficiency and attributes, ready ones first, each with its load.
func (r *Registry) Discover(ctx context.Context, req *meshnodev1.DiscoverRequest) (*meshnodev1.DiscoverResponse, error) {
	if req.GetCapability() == "" {
		return nil, status.Error(codes.InvalidArgument, "capability: must not be empty")
	}
	agents, idx, err := r.store.Agents(ctx, consensus.ReadOptions{}, consensus.AgentFilter{Capability: req.GetCapability()})
	if err != nil {
		return nil, apierror.Wrap("discover "+req.GetCapability(), err)
	}
	out := &meshnodev1.DiscoverResponse{Index: idx}
	for _, a := range agents {
		c := findCapability(a, req.GetCapability())
		if c == nil || c.GetProficiency() < req.GetMinProficiency() || !attributesMatch(c.GetAttributes(), req.GetAttributes()) {
			continue
		}
		out.Agents = append(out.Agents, &meshnodev1.DiscoveredAgent{Agent: a, Capability: c, Load: r.catalog.DiscoverLoad(a)})
	}
	sort.SliceStable(out.Agents, func(i, j int) bool {
		ri, rj := out.Agents[i].GetLoad().GetStatus() == "ready", out.Agents[j].GetLoad().GetStatus() == "ready"
		if ri != rj {
			return ri
		}
		return out.Agents[i].GetAgent().GetId() < out.Agents[j].GetAgent().GetId()
	})
	return out, nil
}

// Watch streams registry changes from an index.
func (r *Registry) Watch(req *meshnodev1.WatchRequest, stream meshnodev1.RegistryService_WatchServer) error {
	ctx := stream.Context()
	for ev := range r.store.Watch(ctx, req.GetFromIndex(), consensus.WatchFilter{Capability: req.GetCapability()}) {
		for _, w := range watchResponses(ev) {
			if err := stream.Send(w); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func readOpts(c meshnodev1.Consistency) consensus.ReadOptions {
	if c == meshnodev1.Consistency_CONSISTENCY_CONSISTENT {
		return consensus.ReadOptions{Consistency: consensus.Consistent}
	}
	return consensus.ReadOptions{Consistency: consensus.Stale}
}

func findCapability(a *meshnodev1.Agent, name string) *meshnodev1.Capability {
	for _, c := range a.GetCapabilities() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

func attributesMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// RemoveAgent removes any agent's record: an operator's admin command, for
// agents whose node is gone or that are retired.
func (r *Registry) RemoveAgent(ctx context.Context, req *meshnodev1.RemoveAgentRequest) (*meshnodev1.RemoveAgentResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: name the agent to remove as NODE/NAME (meshnode agents --all lists them)")
	}
	idx, by, err := submitAdmin(ctx, r.store, "remove agent "+req.GetId(), func(a *meshnodev1.AdminCommand) {
		a.Request = &meshnodev1.AdminCommand_RemoveAgent{RemoveAgent: req}
	})
	if err != nil {
		return nil, err
	}
	r.log.Warn("agent removed by an operator", "agent", req.GetId(), "operator", by, "index", idx)
	return &meshnodev1.RemoveAgentResponse{Index: idx}, nil
}

// maxKeyHistoryAgents bounds one ListAgentKeys request (an electorate's
// largest size).
const maxKeyHistoryAgents = 256

// ListAgentKeys returns the vote key history of the named agents, read
// through the leader so a verifier sees every key the cluster recorded.
func (r *Registry) ListAgentKeys(ctx context.Context, req *meshnodev1.ListAgentKeysRequest) (*meshnodev1.ListAgentKeysResponse, error) {
	if n := len(req.GetAgentIds()); n == 0 || n > maxKeyHistoryAgents {
		return nil, status.Errorf(codes.InvalidArgument, "agent_ids: %d ids; ask for 1 to %d agents", n, maxKeyHistoryAgents)
	}
	resp := &meshnodev1.ListAgentKeysResponse{}
	for _, id := range req.GetAgentIds() {
		keys, _, err := r.store.AgentKeys(ctx, consensus.ReadOptions{Consistency: consensus.Consistent}, id)
		if err != nil {
			return nil, apierror.Wrap("read the key history of "+id, err)
		}
		resp.Keys = append(resp.Keys, keys...)
	}
	return resp, nil
}

// grantedRoles are the roles the stored authorization policy's bindings
// grant a, for the registration's answer. Registrations are rare, so the
// policy is compiled here rather than shared with the data plane's gate.
func (r *Registry) grantedRoles(ctx context.Context, a *meshnodev1.Agent) []string {
	rec, err := r.store.AuthzPolicy(ctx, consensus.ReadOptions{})
	if err != nil || rec == nil {
		return nil
	}
	e, err := authz.Compile(rec.GetPolicy(), rec.GetModifyIndex())
	if err != nil {
		return nil
	}
	return e.Roles(consensus.AuthzSubject(a))
}
