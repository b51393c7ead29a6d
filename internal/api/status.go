package api

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// nodeService serves NodeService: this node's status and the members it
// knows of.
type nodeService struct {
	meshnodev1.UnimplementedNodeServiceServer
	cfg Config
}

func (s *nodeService) Status(ctx context.Context, _ *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	self := s.cfg.Self()
	leader := ""
	for _, sv := range Servers(ctx, s.cfg.Store, s.cfg.Logger) {
		if sv.Role == "leader" {
			leader = sv.Name
		}
	}
	return &meshnodev1.StatusResponse{
		Name:                 s.cfg.Node,
		Version:              s.cfg.Version,
		Role:                 self.Role,
		StartedAt:            timestamppb.New(self.StartedAt),
		UptimeSeconds:        s.cfg.Clock.Now().Sub(self.StartedAt).Seconds(),
		BindAddress:          self.BindAddress,
		DataDir:              self.DataDir,
		SpiffeId:             self.SpiffeID,
		CertificateExpiresAt: timestamppb.New(self.CertificateExpiresAt),
		Leader:               leader,
		RegistryIndex:        s.cfg.Store.Index(),
		LocalAgents:          uint32(len(s.cfg.Hub.Snapshot())),
		ClusterId:            self.ClusterID,
	}, nil
}

// Members merges the gossip view with the Raft roles and the nodes the
// registry knows that gossip has not seen (yet, or any more).
func (s *nodeService) Members(ctx context.Context, _ *meshnodev1.MembersRequest) (*meshnodev1.MembersResponse, error) {
	raftRoles := map[string]string{}
	for _, sv := range Servers(ctx, s.cfg.Store, s.cfg.Logger) {
		raftRoles[sv.Name] = string(sv.Role)
	}
	byName := map[string]*meshnodev1.Member{}
	for _, m := range s.cfg.Gossip.Members() {
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
	if recs, _, err := s.cfg.Store.Nodes(ctx, consensus.ReadOptions{}); err == nil {
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

// Servers lists the Raft servers, asking for at most two seconds; on error
// (no leader to ask) it is empty.
func Servers(ctx context.Context, st *consensus.Store, log *slog.Logger) []consensus.ServerInfo {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := st.Servers(ctx)
	if err != nil {
		log.Debug("listing Raft servers", "err", err)
	}
	return s
}
