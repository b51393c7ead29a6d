package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	"github.com/agentmesh/meshnode/internal/authzgate"
	"github.com/agentmesh/meshnode/internal/catalog"
	"github.com/agentmesh/meshnode/internal/clock"
	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/internal/hub"
	"github.com/agentmesh/meshnode/internal/traffic"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// Config is what the services read and act on. Every field but Clock and
// Logger is required.
type Config struct {
	Node    string // this node's name, the prefix of its agents' ids
	Version string // the release, for Status

	Store       *consensus.Store
	Registry    *Registry
	Hub         *hub.Hub
	Catalog     *catalog.Catalog
	Plane       *dataplane.Plane
	Coordinator *quorum.Coordinator
	Decisions   *Decisions
	// Authz is the node's authorization gate, the one the data plane
	// enforces (default: a gate over Store).
	Authz  *authzgate.Gate
	Gossip Members
	// Traffic is the node's traffic matrix and TrafficPeers how to reach
	// the other nodes' (nil: this node only). TrafficService is served
	// when Traffic is set.
	Traffic      *traffic.Table
	TrafficPeers TrafficPeers

	// Self describes the node for Status, at the time of the call.
	Self func() Self
	// PKI returns the PKI service; needCA asks for one that can sign
	// (servers only: it fails with a status saying what to do elsewhere).
	PKI func(ctx context.Context, needCA bool) (*pki.Service, error)

	Clock  clock.Clock  // default: the system clock
	Logger *slog.Logger // default: discard
}

// Members is the gossip view Members reports.
type Members interface {
	Members() []gossip.Member
}

// Self is what only the node knows about itself.
type Self struct {
	Role                 string // server or client
	BindAddress          string
	DataDir              string
	SpiffeID             string
	StartedAt            time.Time
	CertificateExpiresAt time.Time
	ClusterID            string // what votes and admin commands are signed for
}

// WriteTimeout bounds a write made for an API caller: on the minority side
// of a partition there is no leader, and the caller should hear so in
// seconds, not at its own (possibly long) deadline.
const WriteTimeout = 5 * time.Second

func boundWrite(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, WriteTimeout)
}

func (c Config) check() error {
	switch {
	case c.Node == "":
		return errors.New("api: Config.Node is required")
	case c.Store == nil || c.Registry == nil || c.Hub == nil || c.Catalog == nil || c.Plane == nil || c.Coordinator == nil || c.Decisions == nil:
		return errors.New("api: Config needs Store, Registry, Hub, Catalog, Plane, Coordinator and Decisions")
	case c.Gossip == nil || c.Self == nil || c.PKI == nil:
		return errors.New("api: Config needs Gossip, Self and PKI")
	}
	return nil
}

// Register puts every agent API service on r.
func Register(r grpc.ServiceRegistrar, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	cfg.Clock = clock.OrSystem(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	meshnodev1.RegisterNodeServiceServer(r, &nodeService{cfg: cfg})
	meshnodev1.RegisterRegistryServiceServer(r, cfg.Registry)
	meshnodev1.RegisterInvokeServiceServer(r, &invokeService{hub: cfg.Hub, plane: cfg.Plane})
	meshnodev1.RegisterTaskServiceServer(r, &taskService{plane: cfg.Plane})
	meshnodev1.RegisterPolicyServiceServer(r, &policyService{store: cfg.Store, log: cfg.Logger})
	meshnodev1.RegisterQuorumServiceServer(r, &quorumService{cfg: cfg})
	gate := cfg.Authz
	if gate == nil {
		gate = authzgate.New(cfg.Store)
	}
	meshnodev1.RegisterAuthzServiceServer(r, &authzService{cfg: cfg, gate: gate})
	meshnodev1.RegisterPKIServiceServer(r, &pkiService{node: cfg.Node, service: cfg.PKI, store: cfg.Store, log: cfg.Logger})
	meshnodev1.RegisterOperatorServiceServer(r, &operatorService{store: cfg.Store, log: cfg.Logger})
	if cfg.Traffic != nil {
		meshnodev1.RegisterTrafficServiceServer(r, &trafficService{node: cfg.Node, table: cfg.Traffic, peers: cfg.TrafficPeers, log: cfg.Logger})
	}
	return nil
}
