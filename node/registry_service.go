package node

import (
	"context"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/agentmesh/meshnode/internal/apierror"
	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// MaxCapabilities is the most capabilities one agent may register.
const MaxCapabilities = 256

// registryStore is what the agent API needs from consensus: committed writes
// and index-stamped reads of the agent registry.
type registryStore interface {
	Apply(ctx context.Context, cmd *meshnodev1.Command) (uint64, *meshnodev1.CommandResult, error)
	ListAgents(ctx context.Context, consistency meshnodev1.Consistency, capability, node string) ([]*meshnodev1.Agent, uint64, error)
	GetAgent(id string) (*meshnodev1.Agent, bool)
	WatchAgents(ctx context.Context, fromIndex uint64, capability string) (<-chan *meshnodev1.WatchResponse, error)
}

type registryService struct {
	meshnodev1.UnimplementedRegistryServiceServer
	n *Node
}

func (s *registryService) Register(ctx context.Context, req *meshnodev1.RegisterRequest) (*meshnodev1.RegisterResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if err := validateRegistration(req); err != nil {
		return nil, err
	}
	n := s.n
	id := n.cfg.Name + "/" + req.GetName()
	if err := n.hub.Claim(id, hub.Owner(cred)); err != nil {
		return nil, err
	}
	rec := &meshnodev1.Agent{
		Id:            id,
		Name:          req.GetName(),
		Node:          n.cfg.Name,
		Roles:         req.GetRoles(),
		Capabilities:  req.GetCapabilities(),
		VotePublicKey: req.GetVotePublicKey(),
		Status:        meshnodev1.AgentStatus_AGENT_STATUS_REGISTERED,
		OwnerUid:      cred.UID,
		OwnerPid:      cred.PID,
	}
	if old, ok := n.registry.GetAgent(id); ok {
		// Keep the readiness and flag the registry already holds: a
		// re-registration is not a way to clear an equivocation flag.
		rec.Flagged, rec.FlaggedReason = old.GetFlagged(), old.GetFlaggedReason()
		if old.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_READY && n.hub.Serving(id) {
			rec.Status = old.GetStatus()
		}
	}
	idx, res, err := n.registry.Apply(ctx, &meshnodev1.Command{Version: 1, Op: &meshnodev1.Command_RegisterAgent{RegisterAgent: &meshnodev1.RegisterAgentCommand{Agent: rec}}})
	if err != nil {
		return nil, storeError("register agent "+id, err)
	}
	if err := resultError(res, "register agent "+id); err != nil {
		return nil, err
	}
	committed, ok := n.registry.GetAgent(id)
	if !ok {
		committed = proto.Clone(rec).(*meshnodev1.Agent)
	}
	n.log.Info("agent registered", "agent", id, "capabilities", len(rec.Capabilities), "owner", cred.String(), "index", idx)
	return &meshnodev1.RegisterResponse{Agent: committed, Index: idx}, nil
}

func (s *registryService) Deregister(ctx context.Context, req *meshnodev1.DeregisterRequest) (*meshnodev1.DeregisterResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	n := s.n
	id := n.hub.AgentID(req.GetAgentId())
	if err := n.hub.Owned(id, hub.Owner(cred)); err != nil {
		return nil, err
	}
	idx, err := n.deregisterAgent(ctx, id)
	if err != nil {
		return nil, err
	}
	return &meshnodev1.DeregisterResponse{Index: idx}, nil
}

func (n *Node) deregisterAgent(ctx context.Context, id string) (uint64, error) {
	idx, res, err := n.registry.Apply(ctx, &meshnodev1.Command{Version: 1, Op: &meshnodev1.Command_DeregisterAgent{DeregisterAgent: &meshnodev1.DeregisterAgentCommand{Id: id}}})
	if err != nil {
		return 0, storeError("deregister agent "+id, err)
	}
	if err := resultError(res, "deregister agent "+id); err != nil && status.Code(err) != codes.NotFound {
		return 0, err
	}
	n.hub.Remove(id)
	n.log.Info("agent deregistered", "agent", id, "index", idx)
	return idx, nil
}

func (s *registryService) ListAgents(ctx context.Context, req *meshnodev1.ListAgentsRequest) (*meshnodev1.ListAgentsResponse, error) {
	agents, idx, err := s.n.registry.ListAgents(ctx, req.GetConsistency(), req.GetCapability(), req.GetNode())
	if err != nil {
		return nil, storeError("list agents", err)
	}
	sort.Slice(agents, func(i, j int) bool { return agents[i].GetId() < agents[j].GetId() })
	return &meshnodev1.ListAgentsResponse{Agents: agents, Index: idx}, nil
}

func (s *registryService) Discover(ctx context.Context, req *meshnodev1.DiscoverRequest) (*meshnodev1.DiscoverResponse, error) {
	if req.GetCapability() == "" {
		return nil, status.Error(codes.InvalidArgument, "capability: must not be empty")
	}
	agents, idx, err := s.n.registry.ListAgents(ctx, meshnodev1.Consistency_CONSISTENCY_STALE, req.GetCapability(), "")
	if err != nil {
		return nil, storeError("discover "+req.GetCapability(), err)
	}
	out := &meshnodev1.DiscoverResponse{Index: idx}
	for _, a := range agents {
		c := findCapability(a, req.GetCapability())
		if c == nil || c.GetProficiency() < req.GetMinProficiency() || !attributesMatch(c.GetAttributes(), req.GetAttributes()) {
			continue
		}
		out.Agents = append(out.Agents, &meshnodev1.DiscoveredAgent{Agent: a, Capability: c, Load: s.n.catalog.DiscoverLoad(a)})
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

func (s *registryService) Watch(req *meshnodev1.WatchRequest, stream meshnodev1.RegistryService_WatchServer) error {
	ch, err := s.n.registry.WatchAgents(stream.Context(), req.GetFromIndex(), req.GetCapability())
	if err != nil {
		return storeError("watch", err)
	}
	for ev := range ch {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return stream.Context().Err()
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

func validateRegistration(req *meshnodev1.RegisterRequest) error {
	bad := func(field, format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, field+": "+format, args...)
	}
	if err := ValidateName(req.GetName()); err != nil {
		return bad("name", "%v", err)
	}
	if n := len(req.GetCapabilities()); n == 0 || n > MaxCapabilities {
		return bad("capabilities", "%d entries; register between 1 and %d", n, MaxCapabilities)
	}
	seen := map[string]bool{}
	for i, c := range req.GetCapabilities() {
		name := c.GetName()
		if name == "" || len(name) > 128 || !utf8.ValidString(name) || strings.ContainsAny(name, " \t\r\n/") {
			return bad("capabilities["+itoa(i)+"].name", "%q: use 1-128 bytes of UTF-8 without spaces or '/'", name)
		}
		if seen[name] {
			return bad("capabilities["+itoa(i)+"].name", "%q is listed twice", name)
		}
		seen[name] = true
		if cost := c.GetCost(); cost < 0 || math.IsNaN(cost) || math.IsInf(cost, 0) {
			return bad("capabilities["+itoa(i)+"].cost", "%v: use a finite number, 0 or more", cost)
		}
		if _, ok := meshnodev1.Proficiency_name[int32(c.GetProficiency())]; !ok {
			return bad("capabilities["+itoa(i)+"].proficiency", "%d is not a proficiency", c.GetProficiency())
		}
		for k, v := range c.GetAttributes() {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || k == "" {
				return bad("capabilities["+itoa(i)+"].attributes", "keys must be non-empty UTF-8, values UTF-8")
			}
		}
	}
	for _, r := range req.GetRoles() {
		if err := ValidateName(r); err != nil {
			return bad("roles", "%v", err)
		}
	}
	if k := len(req.GetVotePublicKey()); k != 0 && k != 32 {
		return bad("vote_public_key", "%d bytes; an ed25519 public key has 32", k)
	}
	return nil
}

// storeError is the API's answer to a store error met while doing
// something: the one table in internal/apierror decides the code, and the
// message keeps the store's own advice (ErrNoLeader says what to check).
func storeError(doing string, err error) error {
	return apierror.Wrap(doing, err)
}

// resultError turns a command's FSM result into an error.
func resultError(res *meshnodev1.CommandResult, doing string) error {
	return apierror.Result(doing, res)
}
