package node

import (
	"context"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// registerServices puts every agent API service on the socket's gRPC server.
func registerServices(n *Node) {
	r := n.api.Registrar()
	meshnodev1.RegisterNodeServiceServer(r, &nodeService{n: n})
	meshnodev1.RegisterRegistryServiceServer(r, &registryService{n: n})
	meshnodev1.RegisterInvokeServiceServer(r, &invokeService{n: n})
	meshnodev1.RegisterPolicyServiceServer(r, &policyService{n: n})
	meshnodev1.RegisterQuorumServiceServer(r, &quorumService{n: n})
	meshnodev1.RegisterPKIServiceServer(r, &pkiService{n: n})
}

type nodeService struct {
	meshnodev1.UnimplementedNodeServiceServer
	n *Node
}

func (s *nodeService) Status(ctx context.Context, _ *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	n := s.n
	return &meshnodev1.StatusResponse{
		Name:                 n.cfg.Name,
		Version:              Version,
		Role:                 n.role(),
		StartedAt:            timestamppb.New(n.startedAt),
		UptimeSeconds:        time.Since(n.startedAt).Seconds(),
		BindAddress:          n.ep.Addr().String(),
		DataDir:              n.cfg.DataDir,
		SpiffeId:             n.id.String(),
		CertificateExpiresAt: timestamppb.New(n.keeper.Current().Leaf().NotAfter),
		Leader:               n.leader(),
		RegistryIndex:        n.store.Index(),
		LocalAgents:          uint32(len(n.hub.Snapshot())),
	}, nil
}

func (n *Node) leader() string {
	for _, s := range n.servers(context.Background()) {
		if s.Role == "leader" {
			return s.Name
		}
	}
	return ""
}

// servers lists the Raft servers; on error (no leader to ask) it is empty.
func (n *Node) servers(ctx context.Context) []consensus.ServerInfo {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := n.store.Servers(ctx)
	if err != nil {
		n.log.Debug("listing Raft servers", "err", err)
	}
	return s
}
