package dataplane

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
	"github.com/agentmesh/meshnode/internal/hub"
	"github.com/agentmesh/meshnode/internal/tasks"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"github.com/agentmesh/meshnode/routing"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
)

// Peer RPC methods the data plane serves on the transport.
const (
	MethodForwardCall = "invoke.Forward"
	MethodForwardVote = "quorum.Vote"
	// MethodForwardStream is a streaming call: one QUIC stream carries the
	// ForwardCallRequest, then the StreamFrames back.
	MethodForwardStream = "invoke.ForwardStream"
)

// Local is the hub: the agents attached to this node. *hub.Hub implements it.
type Local interface {
	AgentID(nameOrID string) string
	Owned(agentID string, o hub.Owner) error
	Parent(callID string) (hub.Parent, bool)
	Deliver(ctx context.Context, agentID string, d *meshnodev1.Delivery, cc hub.CallContext) (*meshnodev1.RespondRequest, error)
	DeliverStream(ctx context.Context, agentID string, d *meshnodev1.Delivery, cc hub.CallContext) (*hub.Reply, error)
	AskVote(ctx context.Context, agentID string, p *meshnodev1.Proposal, clusterID string) (*meshnodev1.Vote, error)
}

// Catalog answers where calls can go. *catalog.Catalog implements it.
type Catalog interface {
	routing.Resolver
	PolicyFor(ctx context.Context, capability string) (routing.Policy, error)
	NodeAddress(node string) (string, bool)
	Observe(agentID string, d time.Duration, ok bool)
	ObserveCall(d time.Duration, ok bool)
}

// Router runs a call's attempts. *routing.Router implements it.
type Router interface {
	Route(ctx context.Context, req routing.Request, cands []routing.Candidate, inv routing.Invoker) (routing.Result, error)
}

// Peers sends one request to a node's peer RPC method and decodes its
// answer; errors are gRPC statuses.
type Peers interface {
	Invoke(ctx context.Context, addr, method string, req, resp proto.Message) error
	// OpenStream opens a streaming peer RPC; the stream ends with ctx.
	OpenStream(ctx context.Context, addr, method string) (PeerStream, error)
}

// PeerStream is one streaming peer RPC, either side: length-prefixed
// messages both ways over one QUIC stream, with its flow control.
// *transport.Stream implements it.
type PeerStream interface {
	Send(m proto.Message) error
	Recv(m proto.Message) error
	CloseSend() error
	Close() error
}

// Config configures a Plane. LocalNode, Local, Catalog, Router and Peers
// are required.
type Config struct {
	LocalNode string
	// MaxPayload bounds request payloads, from the socket and from peers.
	MaxPayload int
	// CallTimeout is the deadline of a call that names none.
	CallTimeout time.Duration
	// MaxVoteWait caps how long a peer may make this node wait for a local
	// agent's vote, whatever deadline its proposal names: the wait, the
	// deadline the agent is told and the hub's memory of the request all
	// end there. Default: the longest deadline a coordinator accepts
	// (quorum's MaxDeadline default), so no valid proposal loses its
	// remote votes to the cap.
	MaxVoteWait time.Duration
	// TaskTimeout is the deadline of a task that names none. Default 24h.
	TaskTimeout time.Duration
	// Tasks holds the tasks this node's agents run; nil refuses tasks.
	Tasks *tasks.Manager
	// ClusterID is signed into every vote.
	ClusterID string
	Local     Local
	Catalog   Catalog
	Router    Router
	Peers     Peers
	// Authz decides every call, at both ends; nil allows everything.
	Authz Authorizer
	// Observer is told about every call (metrics, traffic matrix); default none.
	Observer Observer
	Tracer   trace.Tracer // default no-op
	Clock    clock.Clock  // default the system clock
	Logger   *slog.Logger // default discards
}

// Plane is a node's data plane. Safe for concurrent use; it starts no
// goroutines.
type Plane struct {
	cfg      Config
	inflight inflightCalls
	keys     taskKeys
}

// New checks cfg and returns a Plane.
func New(cfg Config) (*Plane, error) {
	switch {
	case cfg.LocalNode == "":
		return nil, errors.New("dataplane: LocalNode is required")
	case cfg.Local == nil || cfg.Catalog == nil || cfg.Router == nil || cfg.Peers == nil:
		return nil, errors.New("dataplane: Local, Catalog, Router and Peers are required")
	case cfg.MaxPayload <= 0 || cfg.CallTimeout <= 0:
		return nil, errors.New("dataplane: MaxPayload and CallTimeout must be positive")
	}
	if cfg.MaxVoteWait <= 0 {
		cfg.MaxVoteWait = quorum.DefaultCoordinatorConfig().MaxDeadline
	}
	if cfg.Observer == nil {
		cfg.Observer = Observers(nil)
	}
	if cfg.TaskTimeout <= 0 {
		cfg.TaskTimeout = 24 * time.Hour
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("meshnode/dataplane")
	}
	cfg.Clock = clock.OrSystem(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Plane{cfg: cfg}, nil
}

// NodeGone cancels every call in flight to node (gossip declared it dead or
// it left), so their callers fail over or fail fast instead of waiting out
// their deadlines. It reports how many were cancelled.
func (p *Plane) NodeGone(node string) int { return p.inflight.cancelNode(node) }
