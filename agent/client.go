package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// maxMessageSize bounds one gRPC message each way: the largest payload a
// node can be configured to take (max_payload, at most 64 MiB) plus room for
// metadata. Lower, a delivery the node accepted could exceed what the agent
// reads, and that would end its whole stream; the node enforces its own,
// usually much lower, limit on every call.
const maxMessageSize = 64<<20 + 64<<10

// Client talks to the local node for callers that do not serve capabilities:
// Call, Discover, ListAgents, Watch and Status. It is safe for concurrent
// use. An Agent has one too (Agent.Client).
type Client struct {
	socket   string
	conn     *grpc.ClientConn
	registry meshnodev1.RegistryServiceClient
	invoke   meshnodev1.InvokeServiceClient
	tasks    meshnodev1.TaskServiceClient
	node     meshnodev1.NodeServiceClient
	quorum   meshnodev1.QuorumServiceClient
	log      *slog.Logger
	backoff  Backoff
	rand     func() float64
	// agentID is the registered agent this client calls as, if any.
	agentID atomic.Pointer[string]
}

// DialOption configures Dial.
type DialOption func(*dialConfig)

type dialConfig struct {
	log     *slog.Logger
	backoff Backoff
}

// WithLogger sets where the client logs reconnects (Watch). Default:
// slog.Default().
func WithLogger(l *slog.Logger) DialOption { return func(c *dialConfig) { c.log = l } }

// WithBackoff sets the reconnect schedule; zero fields take DefaultBackoff's.
func WithBackoff(b Backoff) DialOption { return func(c *dialConfig) { c.backoff = b } }

// Dial connects to the node listening on socket ("" means DefaultSocket).
// It fails fast with ErrNodeUnreachable when nothing listens there; after
// that the connection re-establishes itself if the node restarts.
func Dial(ctx context.Context, socket string, opts ...DialOption) (*Client, error) {
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.backoff.Validate(); err != nil {
		return nil, err
	}
	if socket == "" {
		socket = DefaultSocket()
	}
	var d net.Dialer
	probe, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v: start a node with `meshnode run`, or set %s to the socket of a running one",
			ErrNodeUnreachable, socket, err, SocketEnv)
	}
	probe.Close()
	return newClient(socket, cfg.log, cfg.backoff)
}

// newClient builds a client without probing the socket: an Agent may start
// before its node and wait for it.
func newClient(socket string, log *slog.Logger, b Backoff) (*Client, error) {
	if log == nil {
		log = slog.Default()
	}
	abs, err := filepath.Abs(socket)
	if err != nil {
		return nil, fmt.Errorf("agent: socket path %q: %w", socket, err)
	}
	b = b.withDefaults()
	conn, err := grpc.NewClient("unix://"+abs,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageSize),
			grpc.MaxCallSendMsgSize(maxMessageSize)),
		// grpc's own reconnect schedule defaults to a 120 s ceiling; keep it
		// as eager as ours so a restarted node is noticed within Max.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  b.Initial,
				Multiplier: b.Multiplier,
				Jitter:     max(b.Jitter, 0),
				MaxDelay:   b.Max,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithUserAgent("meshnode-agent-go"),
	)
	if err != nil {
		return nil, fmt.Errorf("agent: connect to %s: %w", abs, err)
	}
	return &Client{
		socket:   abs,
		conn:     conn,
		registry: meshnodev1.NewRegistryServiceClient(conn),
		invoke:   meshnodev1.NewInvokeServiceClient(conn),
		tasks:    meshnodev1.NewTaskServiceClient(conn),
		node:     meshnodev1.NewNodeServiceClient(conn),
		quorum:   meshnodev1.NewQuorumServiceClient(conn),
		log:      log,
		backoff:  b,
		rand:     defaultRand,
	}, nil
}

// Socket returns the absolute path of the node's socket.
func (c *Client) Socket() string { return c.socket }

// Close releases the connection. Calls in progress fail.
func (c *Client) Close() error { return c.conn.Close() }

// Status describes the local node.
func (c *Client) Status(ctx context.Context) (*meshnodev1.StatusResponse, error) {
	r, err := c.node.Status(ctx, &meshnodev1.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("agent: node status via %s: %w", c.socket, err)
	}
	return r, nil
}

// CallOption adjusts one Call.
type CallOption func(*meshnodev1.CallRequest)

// WithIdempotencyKey makes the call safe for the mesh to retry: the key
// promises at most one execution per agent.
func WithIdempotencyKey(key string) CallOption {
	return func(r *meshnodev1.CallRequest) { r.IdempotencyKey = key }
}

// WithMetadata adds one metadata entry the handler sees in Request.Metadata.
func WithMetadata(key, value string) CallOption {
	return func(r *meshnodev1.CallRequest) {
		if r.Metadata == nil {
			r.Metadata = map[string]string{}
		}
		r.Metadata[key] = value
	}
}

// WithContentType sets the payload's MIME type, such as "application/json".
func WithContentType(contentType string) CallOption {
	return func(r *meshnodev1.CallRequest) { r.ContentType = contentType }
}

// Call invokes capability somewhere in the mesh and waits for the answer.
// ctx's deadline becomes the call's absolute deadline, which the mesh
// propagates to the handler. Inside a handler, pass the handler's ctx: the
// call then names its parent call (cycle detection) and continues the trace.
// Errors carry the gRPC code: use status.Code(err) to branch.
func (c *Client) Call(ctx context.Context, capability string, payload []byte, opts ...CallOption) (*CallResult, error) {
	resp, err := c.invoke.Call(ctx, c.callRequest(ctx, capability, payload, opts))
	if err != nil {
		return nil, fmt.Errorf("agent: call %q: %w", capability, err)
	}
	return callResultFromProto(resp), nil
}

// callRequest builds a Call or CallStream request: the deadline from ctx,
// the parent call and trace context when ctx is a handler's.
func (c *Client) callRequest(ctx context.Context, capability string, payload []byte, opts []CallOption) *meshnodev1.CallRequest {
	req := &meshnodev1.CallRequest{Capability: capability, Payload: payload}
	for _, o := range opts {
		o(req)
	}
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = timestamppb.New(dl)
	}
	if ci, ok := callInfoFrom(ctx); ok {
		req.ParentCallId = ci.callID
		req.CallerAgentId = ci.agentID
	}
	if id := c.agentID.Load(); req.CallerAgentId == "" && id != nil {
		req.CallerAgentId = *id
	}
	if req.Metadata == nil {
		req.Metadata = map[string]string{}
	}
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(req.Metadata))
	return req
}

// DiscoverOption narrows Discover.
type DiscoverOption func(*meshnodev1.DiscoverRequest)

// MinProficiency keeps agents at least this proficient.
func MinProficiency(p Proficiency) DiscoverOption {
	return func(r *meshnodev1.DiscoverRequest) { r.MinProficiency = p }
}

// WithAttribute keeps agents whose capability has attribute key = value.
func WithAttribute(key, value string) DiscoverOption {
	return func(r *meshnodev1.DiscoverRequest) {
		if r.Attributes == nil {
			r.Attributes = map[string]string{}
		}
		r.Attributes[key] = value
	}
}

// Discover lists the agents offering capability with their current load,
// ready ones first, from the node's local replica of the registry.
func (c *Client) Discover(ctx context.Context, capability string, opts ...DiscoverOption) ([]*meshnodev1.DiscoveredAgent, error) {
	req := &meshnodev1.DiscoverRequest{Capability: capability}
	for _, o := range opts {
		o(req)
	}
	r, err := c.registry.Discover(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("agent: discover %q: %w", capability, err)
	}
	return r.GetAgents(), nil
}

// ListOption narrows ListAgents.
type ListOption func(*meshnodev1.ListAgentsRequest)

// OfCapability keeps agents offering the named capability.
func OfCapability(name string) ListOption {
	return func(r *meshnodev1.ListAgentsRequest) { r.Capability = name }
}

// OnNode keeps agents attached to the named node.
func OnNode(name string) ListOption {
	return func(r *meshnodev1.ListAgentsRequest) { r.Node = name }
}

// Consistent makes the node confirm Raft leadership before answering, so the
// list is never stale; slower than the default local read.
func Consistent() ListOption {
	return func(r *meshnodev1.ListAgentsRequest) { r.Consistency = meshnodev1.Consistency_CONSISTENCY_CONSISTENT }
}

// ListAgents lists registered agents across the cluster, sorted by id.
func (c *Client) ListAgents(ctx context.Context, opts ...ListOption) ([]*meshnodev1.Agent, error) {
	req := &meshnodev1.ListAgentsRequest{}
	for _, o := range opts {
		o(req)
	}
	r, err := c.registry.ListAgents(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("agent: list agents: %w", err)
	}
	return r.GetAgents(), nil
}

// isEOF reports a stream the node ended cleanly, typically while shutting
// down; it is retried like any transient failure.
func isEOF(err error) bool { return err == io.EOF }

// Propose puts a decision to a quorum vote. With wait it returns once the
// proposal is decided, has no quorum, or reaches its deadline; otherwise it
// returns the pending decision at once (poll with Decision). Proposing an id
// again returns the decision recorded for it. Verify a decided outcome's
// certificate with quorum.VerifyDecision rather than trusting the node.
func (c *Client) Propose(ctx context.Context, p *meshnodev1.Proposal, wait bool) (*meshnodev1.Decision, error) {
	r, err := c.quorum.Propose(ctx, &meshnodev1.ProposeRequest{Proposal: p, Wait: wait})
	if err != nil {
		return nil, fmt.Errorf("agent: propose %q: %w", p.GetId(), err)
	}
	return r.GetDecision(), nil
}

// Decision returns the decision on proposal id, pending or final.
func (c *Client) Decision(ctx context.Context, id string) (*meshnodev1.Decision, error) {
	r, err := c.quorum.GetDecision(ctx, &meshnodev1.GetDecisionRequest{Id: id})
	if err != nil {
		return nil, fmt.Errorf("agent: decision %q: %w", id, err)
	}
	return r.GetDecision(), nil
}
