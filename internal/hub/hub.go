package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Owner is the kernel's account of the process that registered an agent
// (SO_PEERCRED). It cannot be forged by the client, which is why ownership
// is bound to it. The node's peer credentials convert to it directly.
type Owner struct {
	PID      int32
	UID, GID uint32
}

// String renders the owner for logs and error messages.
func (o Owner) String() string { return fmt.Sprintf("pid=%d uid=%d gid=%d", o.PID, o.UID, o.GID) }

// CallContext is what a delivered call passes on to the calls its handler
// makes: the agents already on the call, the hops taken and the deadline.
type CallContext struct {
	Chain    []string
	Hops     uint32
	Deadline time.Time
}

// Config configures a Hub. Zero values mean the defaults of DefaultConfig;
// nil callbacks switch their feature off.
type Config struct {
	// Node is the node's name, the prefix of its agents' ids. Required.
	Node   string
	Logger *slog.Logger // default: discard
	Clock  clock.Clock  // default: the system clock; tests fake it

	// DisconnectGrace is how long an agent whose stream went away keeps
	// its registration: long enough for an agent or node restart to come
	// back. Default 30 s.
	DisconnectGrace time.Duration
	// ReapInterval is how often the reaper looks for expired agents and
	// forgets old vote requests. Default 1 s.
	ReapInterval time.Duration
	// AdoptRetry is the wait between attempts to list this node's
	// registered agents at start (a client's replica may still be
	// synchronising). Default 500 ms.
	AdoptRetry time.Duration
	// VoteMemory is how long after its deadline an answered vote request
	// is remembered, so a second, different vote for it is caught as
	// equivocation instead of being ignored. Default 1 min.
	VoteMemory time.Duration
	// AttachOpenTimeout bounds the wait for an Attach stream's serve
	// message: a client that opens Attach and sends nothing would
	// otherwise hold a stream and a goroutine. Default 10 s.
	AttachOpenTimeout time.Duration
	// StreamBuffer is how many events may queue for one Serve stream.
	// Default 256.
	StreamBuffer int
	// ChunkBuffer is how many frames of one streaming call may wait for
	// its caller. Past it the agent's sends block: that is the stream's
	// backpressure, so keep it small. Default 16.
	ChunkBuffer int
	// MaxRefusals bounds the refusals waiting to be sent on one Attach
	// stream. An agent that keeps sending answers nobody waits for loses
	// the surplus reports (they are logged), never the stream. Default 64.
	MaxRefusals int
	// MaxPayload is the largest response payload taken (0: no limit). A
	// larger answer fails its call at once, so the caller hears why
	// instead of waiting out its deadline.
	MaxPayload int
	// MaxMessageBytes is stated to agents in ServeReady.
	MaxMessageBytes uint32
	// KeepCallIDs keeps the CallId of a delivery (and the RequestId of a
	// vote ask) when one is set. By default every delivery gets a fresh
	// random id, so no caller can pick or collide with another call's id;
	// fakes whose tests choose ids set it.
	KeepCallIDs bool
	// Done, when closed, ends every Serve stream with Unavailable (the node
	// is stopping) before the hub itself is closed. Close does the same.
	Done <-chan struct{}
	// ProcessAlive reports whether a pid still exists, to let a restarted
	// agent process take over its name from a dead predecessor, never from
	// a live one. Default: a /proc lookup.
	ProcessAlive func(pid int32) bool

	// Limit gives the in-flight limit for an agent's Serve stream
	// (0: unlimited). Nil: no limit.
	Limit func(agentID string, req *meshnodev1.ServeRequest) int32
	// StatusChanged hears an agent become ready (its stream opened) and
	// disconnected (its stream ended). It must not block: the serve loop
	// waits for it.
	StatusChanged func(agentID string, st meshnodev1.AgentStatus)
	// Deregister removes an agent whose stream did not come back within
	// DisconnectGrace from the registry; the hub forgets the agent once
	// it returns nil, and retries at the next reap otherwise. Nil: agents
	// are never reaped.
	Deregister func(ctx context.Context, agentID string) error
	// Registered lists the agents the registry holds for this node, to
	// adopt at Start. Nil: nothing is adopted.
	Registered func(ctx context.Context) ([]string, error)
	// SecondVote hears a second vote for an answered vote request, with
	// the first, to check for equivocation. It runs on the answering
	// agent's request and may block it.
	SecondVote func(ctx context.Context, first, second *meshnodev1.Vote)
	// OnAnswer, if set, hears every answer an Attach stream carried and
	// what became of it (nil: taken). It runs on the stream's receive
	// loop and must not block. Fakes record answers with it.
	OnAnswer func(agentID string, m *meshnodev1.AttachRequest, err error)
}

// DefaultConfig returns the defaults, each explained on its field.
func DefaultConfig() Config {
	return Config{
		DisconnectGrace:   30 * time.Second,
		ReapInterval:      time.Second,
		AdoptRetry:        500 * time.Millisecond,
		VoteMemory:        time.Minute,
		AttachOpenTimeout: 10 * time.Second,
		StreamBuffer:      256,
		ChunkBuffer:       16,
		MaxRefusals:       64,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Node == "" {
		return errors.New("hub: Node must name the node")
	}
	for name, d := range map[string]time.Duration{"DisconnectGrace": c.DisconnectGrace, "ReapInterval": c.ReapInterval,
		"AdoptRetry": c.AdoptRetry, "VoteMemory": c.VoteMemory, "AttachOpenTimeout": c.AttachOpenTimeout} {
		if d < 0 {
			return fmt.Errorf("hub: %s is %v; it must not be negative (0 means the default)", name, d)
		}
	}
	if c.StreamBuffer < 0 || c.ChunkBuffer < 0 || c.MaxRefusals < 0 || c.MaxPayload < 0 {
		return errors.New("hub: StreamBuffer, ChunkBuffer, MaxRefusals and MaxPayload must not be negative")
	}
	return nil
}

func (c *Config) populate() {
	def := DefaultConfig()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.System{}
	}
	if c.ProcessAlive == nil {
		c.ProcessAlive = processAlive
	}
	setDefault(&c.DisconnectGrace, def.DisconnectGrace)
	setDefault(&c.ReapInterval, def.ReapInterval)
	setDefault(&c.AdoptRetry, def.AdoptRetry)
	setDefault(&c.VoteMemory, def.VoteMemory)
	setDefault(&c.AttachOpenTimeout, def.AttachOpenTimeout)
	setDefault(&c.StreamBuffer, def.StreamBuffer)
	setDefault(&c.MaxRefusals, def.MaxRefusals)
	setDefault(&c.ChunkBuffer, def.ChunkBuffer)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Hub is the table of one node's local agents and their streams.
type Hub struct {
	cfg   Config
	log   *slog.Logger
	clock clock.Clock

	mu     sync.Mutex
	agents map[string]*agent // by agent id

	calls *correlator[*meshnodev1.RespondRequest]
	votes *correlator[*meshnodev1.VoteRequest]

	pipeMu sync.Mutex
	pipes  map[string]*chunkPipe // streaming calls by call id

	closing   chan struct{}
	closeOnce sync.Once
	startOnce sync.Once
	cancel    context.CancelFunc
	loops     sync.WaitGroup
}

// New validates cfg and builds a hub. Its background loop runs from Start
// to Close; streams may be served before Start.
func New(cfg Config) (*Hub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.populate()
	return &Hub{
		cfg:     cfg,
		log:     cfg.Logger,
		clock:   cfg.Clock,
		agents:  map[string]*agent{},
		pipes:   map[string]*chunkPipe{},
		calls:   newCorrelator[*meshnodev1.RespondRequest](ErrCallNotPending, "call", "it was answered, cancelled or timed out"),
		votes:   newCorrelator[*meshnodev1.VoteRequest](ErrVoteNotPending, "vote request", "its deadline passed"),
		closing: make(chan struct{}),
		cancel:  func() {},
	}, nil
}

// Start runs the background loop: adoption of the agents registered here
// before a restart, then the reaper. Close stops it.
func (h *Hub) Start() {
	h.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		h.mu.Lock()
		h.cancel = cancel
		h.mu.Unlock()
		h.loops.Add(1)
		go func() {
			defer h.loops.Done()
			h.run(ctx)
		}()
	})
}

// Close ends every Serve stream with Unavailable, stops the background loop
// and waits for it. It is safe to call more than once.
func (h *Hub) Close() {
	h.closeOnce.Do(func() { close(h.closing) })
	h.startOnce.Do(func() {}) // a later Start starts nothing
	h.mu.Lock()
	cancel := h.cancel
	h.mu.Unlock()
	cancel()
	h.loops.Wait()
}

func (h *Hub) newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// processAlive reports whether pid still exists.
func processAlive(pid int32) bool {
	if pid <= 0 {
		return false
	}
	_, err := os.Stat("/proc/" + strconv.Itoa(int(pid)))
	return err == nil
}
