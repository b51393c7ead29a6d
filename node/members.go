package node

import (
	"context"
	"sort"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func (s *nodeService) Members(ctx context.Context, _ *meshnodev1.MembersRequest) (*meshnodev1.MembersResponse, error) {
	n := s.n
	raftRoles := map[string]string{}
	for _, sv := range n.servers(ctx) {
		raftRoles[sv.Name] = string(sv.Role)
	}
	byName := map[string]*meshnodev1.Member{}
	for _, m := range n.gossip.Members() {
		role := "client"
		if m.Meta.Role == gossip.RoleServer {
			role = "server"
		}
		byName[m.Name] = &meshnodev1.Member{
			Name: m.Name, Address: m.Meta.QUICAddr, Role: role, Status: m.Status.String(),
			RaftRole: raftRoles[m.Name], Agents: uint32(m.Agents), InFlight: m.Load.InFlight,
			Version: m.Meta.Version, SpiffeId: m.Meta.SPIFFEID,
		}
	}
	// Nodes the registry knows but gossip has not seen (yet, or any more).
	if recs, _, err := n.store.Nodes(ctx, consensus.ReadOptions{}); err == nil {
		for _, r := range recs {
			if _, ok := byName[r.GetName()]; !ok {
				byName[r.GetName()] = &meshnodev1.Member{Name: r.GetName(), Address: r.GetAddress(), Role: r.GetRole(),
					Status: "unknown", RaftRole: raftRoles[r.GetName()], SpiffeId: r.GetSpiffeId()}
			}
		}
	}
	out := &meshnodev1.MembersResponse{}
	for _, m := range byName {
		out.Members = append(out.Members, m)
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].GetName() < out.Members[j].GetName() })
	return out, nil
}
