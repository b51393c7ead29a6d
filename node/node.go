package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/gossip"
	"github.com/agentmesh/meshnode/internal/api"
	"github.com/agentmesh/meshnode/internal/apierror"
	"github.com/agentmesh/meshnode/internal/authzgate"
	"github.com/agentmesh/meshnode/internal/background"
	"github.com/agentmesh/meshnode/internal/catalog"
	"github.com/agentmesh/meshnode/internal/clock"
	"github.com/agentmesh/meshnode/internal/dataplane"
	"github.com/agentmesh/meshnode/internal/hub"
	"github.com/agentmesh/meshnode/internal/metrics"
	"github.com/agentmesh/meshnode/internal/pkistate"
	"github.com/agentmesh/meshnode/internal/selfrevoke"
	"github.com/agentmesh/meshnode/internal/socketapi"
	"github.com/agentmesh/meshnode/internal/tasks"
	"github.com/agentmesh/meshnode/internal/traffic"
	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/quorum"
	"github.com/agentmesh/meshnode/routing"
	"github.com/agentmesh/meshnode/transport"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// component is one piece of the node with a start and a stop. Components
// start in the order they are added and stop in reverse, so each one can rely
// on everything started before it until it has stopped itself. Each gets its
// own group of background loops, stopped just before the component: a loop
// never outlives what it uses. The name is for logs and errors only.
type component struct {
	name  string
	start func(ctx context.Context, bg *background.Group) error
	stop  func(ctx context.Context)
	bg    *background.Group
}

// Node is one meshnode daemon.
type Node struct {
	cfg       Config
	log       *slog.Logger
	startedAt time.Time

	lock *dirLock
	api  *socketapi.Server

	// Set during Start, in this order; read-only afterwards.
	id          pki.ID
	keeper      *pki.Keeper
	tls         *pki.TLSSource
	gossipKey   ed25519.PrivateKey
	pendingCA   *pki.CAMaterial
	revocations revocationProxy
	renewer     *pki.Renewer
	ep          *transport.Endpoint
	store       *consensus.Store
	registry    *api.Registry
	decisions   *api.Decisions
	pki         *pkistate.Store
	caPtr       atomic.Pointer[pki.CA]
	// peerTrust answers the transport's questions (who may speak Raft, who
	// must answer at an address) once consensus runs; the transport starts
	// first and asks from its own goroutines.
	peerTrust   atomic.Pointer[peerTrust]
	gossip      *gossip.Gossip
	router      *routing.Router
	coordinator *quorum.Coordinator
	hub         *hub.Hub
	catalog     *catalog.Catalog
	authz       *authzgate.Gate // the authorization policy in force, shared by the data plane and the API
	tasks       *tasks.Manager
	plane       atomic.Pointer[dataplane.Plane] // set when routing starts; peers may ask before
	publishMu   sync.Mutex                      // serialises publishLoadNow
	tracing     *sdktrace.TracerProvider
	metrics     *metrics.Registry
	metricsSrv  *metrics.Server // nil: the listener is off or its default port was taken
	stopBridge  func()
	traffic     *traffic.Table
	// tracingInjected: tracing came from SetTracerProvider; the caller owns it.
	tracingInjected bool

	clock clock.Clock
	// agentLoops runs the registry writes of local agents' status changes;
	// it is the agents component's group.
	agentLoops *background.Group

	// stopping is closed when Stop begins, ending Serve streams.
	stopping chan struct{}
	// selfRevoked is set when the revocation watch starts.
	selfRevoked atomic.Pointer[selfrevoke.Watcher]

	mu         sync.Mutex
	components []component
	started    []component
	stopped    chan struct{}
	stopOnce   sync.Once
}

// New validates cfg and builds a node. Nothing is touched on disk or the
// network until Start.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	n := &Node{cfg: cfg, log: log, clock: clock.System{}, stopped: make(chan struct{}), stopping: make(chan struct{})}
	if err := n.newObservability(); err != nil {
		return nil, err
	}
	sock, err := socketapi.New(socketapi.Config{
		Path:       cfg.SocketPath(),
		MaxMessage: cfg.maxMessage(),
		Logger:     log.With("component", "api"),
		MapError:   apierror.Map,
		// /metrics on the socket needs no port: it works with several nodes
		// on one host.
		HTTP: map[string]http.Handler{metrics.Path: n.metrics.Handler()},
	})
	if err != nil {
		return nil, err
	}
	n.api = sock
	return n, nil
}

// Config returns the node's configuration.
func (n *Node) Config() Config { return n.cfg }

// Start brings the node up: data dir, lock, components, then the socket (the
// socket last, so an agent that connects finds a working node). On error,
// everything already started is stopped again and the error is returned.
func (n *Node) Start(ctx context.Context) error {
	n.startedAt = n.clock.Now()
	h, err := n.newHub()
	if err != nil {
		return err
	}
	n.hub = h
	if err := prepareDataDir(n.cfg.DataDir); err != nil {
		return err
	}
	lock, err := lockDataDir(n.cfg.DataDir)
	if err != nil {
		return err
	}
	n.lock = lock
	n.buildComponents()
	for _, c := range n.components {
		n.log.Debug("starting", "component", c.name)
		c.bg = background.New(n.clock)
		if err := c.start(ctx, c.bg); err != nil {
			c.bg.Stop()
			stopCtx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
			n.stopStarted(stopCtx)
			cancel()
			n.lock.release()
			return fmt.Errorf("start %s: %w", c.name, err)
		}
		n.mu.Lock()
		n.started = append(n.started, c)
		n.mu.Unlock()
	}
	n.log.Info("node started", "name", n.cfg.Name, "version", Version, "socket", n.cfg.SocketPath(),
		"data_dir", n.cfg.DataDir, "role", n.role(), "bind", n.cfg.Bind, "advertise", n.advertiseAddr())
	if host, _, _ := net.SplitHostPort(n.cfg.Bind); n.cfg.Advertise == "" && net.ParseIP(host).IsUnspecified() {
		n.log.Info("listening on every interface; peers are told to reach this node at the advertised address, chosen from this host's interfaces: set --bind and --advertise to choose", "bind", n.cfg.Bind, "advertise", n.advertiseAddr())
	}
	return nil
}

func (n *Node) buildComponents() {
	nothing := func(context.Context) {}
	noLoops := func(start func(context.Context) error) func(context.Context, *background.Group) error {
		return func(ctx context.Context, _ *background.Group) error { return start(ctx) }
	}
	n.components = []component{
		{name: "pki", start: noLoops(n.startPKI), stop: nothing},
		{name: "transport", start: noLoops(n.startTransport), stop: func(context.Context) { n.ep.Close() }},
		{name: "metrics", start: n.startMetrics, stop: n.stopMetrics},
		{name: "consensus", start: n.startConsensus, stop: func(context.Context) { n.store.Close() }},
		{name: "gossip", start: n.startGossip, stop: n.stopGossip},
		{name: "renewal", start: n.startRenewal, stop: nothing},
		{name: "tracing", start: noLoops(n.startTracing), stop: n.stopTracing},
		{name: "tasks", start: noLoops(n.startTasks), stop: n.stopTasks},
		{name: "routing", start: noLoops(n.startRouting), stop: nothing},
		{name: "quorum", start: noLoops(n.startQuorum), stop: func(context.Context) { n.coordinator.Close() }},
		{name: "agents", start: n.startAgents, stop: func(context.Context) { n.hub.Close() }},
		{name: "revocation-watch", start: n.startRevocationWatch, stop: nothing},
		{name: "agent-api", start: noLoops(n.startAPI), stop: n.api.Stop},
	}
}

func (n *Node) startAPI(ctx context.Context) error {
	if err := n.registerAPI(); err != nil {
		return err
	}
	return n.api.Start(ctx)
}

// SetClock makes the node read c instead of the system clock (tests move
// time by hand). Call it before Start.
func (n *Node) SetClock(c clock.Clock) { n.clock = clock.OrSystem(c) }

// Stop stops every started component in reverse order, bounded by ctx.
// It is safe to call more than once.
func (n *Node) Stop(ctx context.Context) error {
	var err error
	n.stopOnce.Do(func() {
		close(n.stopping)
		n.stopStarted(ctx)
		n.lock.release()
		if ctx.Err() != nil {
			err = fmt.Errorf("stop: %w", ctx.Err())
		}
		close(n.stopped)
		n.log.Info("node stopped", "name", n.cfg.Name)
	})
	return err
}

func (n *Node) stopStarted(ctx context.Context) {
	n.mu.Lock()
	started := n.started
	n.started = nil
	n.mu.Unlock()
	for i := len(started) - 1; i >= 0; i-- {
		c := started[i]
		n.log.Debug("stopping", "component", c.name)
		c.bg.Stop()
		c.stop(ctx)
	}
}

// Done is closed once Stop has finished.
func (n *Node) Done() <-chan struct{} { return n.stopped }

// SetTracerProvider makes the node record its spans with tp instead of the
// provider built from the configuration (tests use an in-memory exporter).
// Call it before Start.
func (n *Node) SetTracerProvider(tp *sdktrace.TracerProvider) {
	n.tracing, n.tracingInjected = tp, true
}

func (n *Node) startTracing(context.Context) error {
	if n.tracingInjected {
		return nil
	}
	tp, err := routing.NewTracerProvider(n.cfg.TraceExporter, n.cfg.TraceEndpoint)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	n.tracing = tp
	return nil
}

func (n *Node) stopTracing(ctx context.Context) {
	if n.tracing != nil && !n.tracingInjected {
		n.tracing.Shutdown(ctx)
	}
}

func (n *Node) role() string {
	if n.isServer() {
		return "server"
	}
	return "client"
}

// ErrStopped is returned by operations on a stopped node.
var ErrStopped = errors.New("node is stopped")
