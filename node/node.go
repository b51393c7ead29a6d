package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// component is one piece of the node with a start and a stop. Components
// start in the order they are added and stop in reverse, so each one can rely
// on everything started before it until it has stopped itself.
type component struct {
	name  string
	start func(ctx context.Context) error
	stop  func(ctx context.Context)
}

// Node is one meshnode daemon.
type Node struct {
	cfg       Config
	log       *slog.Logger
	startedAt time.Time

	lock *dirLock
	api  *apiServer

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
	n := &Node{cfg: cfg, log: log, stopped: make(chan struct{})}
	n.api = newAPIServer(apiServerConfig{
		Path:       cfg.SocketPath(),
		MaxMessage: cfg.MaxPayload + 64<<10,
		Logger:     log.With("component", "api"),
	})
	return n, nil
}

// Config returns the node's configuration.
func (n *Node) Config() Config { return n.cfg }

// Start brings the node up: data dir, lock, components, then the socket (the
// socket last, so an agent that connects finds a working node). On error,
// everything already started is stopped again and the error is returned.
func (n *Node) Start(ctx context.Context) error {
	n.startedAt = time.Now()
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
		if err := c.start(ctx); err != nil {
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
		"data_dir", n.cfg.DataDir, "role", n.role())
	return nil
}

func (n *Node) buildComponents() {
	n.components = append(n.components, component{
		name:  "agent-api",
		start: func(ctx context.Context) error { registerServices(n); return n.api.start(ctx) },
		stop:  n.api.stop,
	})
}

// Stop stops every started component in reverse order, bounded by ctx.
// It is safe to call more than once.
func (n *Node) Stop(ctx context.Context) error {
	var err error
	n.stopOnce.Do(func() {
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
		c.stop(ctx)
	}
}

// Done is closed once Stop has finished.
func (n *Node) Done() <-chan struct{} { return n.stopped }

func (n *Node) role() string {
	if n.cfg.Server || len(n.cfg.Join) == 0 {
		return "server"
	}
	return "client"
}

// ErrStopped is returned by operations on a stopped node.
var ErrStopped = errors.New("node is stopped")
