package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// DefaultMaxInFlight is how many calls an Agent handles at once when
// MaxInFlight is zero.
const DefaultMaxInFlight = 64

// DefaultMaxVotesInFlight is how many vote handlers an Agent runs at once
// when MaxVotesInFlight is zero. It is small because a vote handler is
// usually one model call, and an electorate asks each voter once per
// proposal: a burst of proposals should not become a burst of model calls.
const DefaultMaxVotesInFlight = 4

// Limits the node enforces too; checking them here turns a round trip and a
// wire error into an error that names the field.
const (
	maxNameLen       = 64
	maxCapNameLen    = 128
	maxCapabilities  = 256
	defaultAgentName = "agent"
)

// Agent is a program that serves capabilities to the mesh through its local
// node. The zero value works: set the exported fields you need before the
// first call to Register, Serve, Call or Client, and do not change them
// afterwards.
//
//	a := &agent.Agent{Name: "inventory"}
//	a.Handle(agent.Capability{Name: "inventory.lookup"}, lookup)
//	err := a.Serve(ctx) // registers, serves, reconnects; returns when ctx ends
type Agent struct {
	// Name is the agent's name on its node: 1-64 bytes of letters, digits,
	// '.', '-' and '_'. Default: the program's file name.
	Name string
	// Socket is the node's Unix socket. Default: DefaultSocket().
	Socket string
	// Roles are the roles the agent plays ("voter", "reviewer", ...).
	Roles []string
	// StateDir keeps what makes the agent the same voter across restarts:
	// its vote key (vote.key, unless KeyFile says otherwise) and the journal
	// of the votes it signed (one per proposal, see votejournal.go).
	// Default: $XDG_STATE_HOME/meshnode/agents/NAME-SOCKETHASH, or
	// ~/.local/state/meshnode/agents/NAME-SOCKETHASH (the socket's hash
	// keeps agents of one name on two nodes of one host apart).
	StateDir string
	// KeyFile holds the agent's ed25519 vote signing key (PKCS#8 PEM, mode
	// 0600), created on first use. Default: StateDir/vote.key.
	KeyFile string
	// Ephemeral keeps the key and the vote journal in memory only: the
	// agent is a new voter every time it starts, and certificates it signed
	// verify only through the registry's key history. For tests and
	// throwaway agents.
	Ephemeral bool
	// Logger receives connection events and handler panics. Default:
	// slog.Default().
	Logger *slog.Logger
	// ReconnectBackoff is the schedule for reconnecting after the node goes
	// away. Zero fields take DefaultBackoff's values.
	ReconnectBackoff Backoff
	// MaxInFlight bounds the calls handled at once, across capabilities.
	// Default: DefaultMaxInFlight, or the sum of the capabilities'
	// MaxConcurrency if that is lower and every capability has one. The node
	// is told, so it routes the excess elsewhere instead of queueing it here.
	MaxInFlight int
	// MaxVotesInFlight bounds the vote handlers running at once, across
	// kinds. A vote request that arrives while that many run is shed: it
	// is answered at once with a signed Abstain whose reason says so (the
	// agent's vote on that proposal), and a warning is logged. Default:
	// DefaultMaxVotesInFlight.
	MaxVotesInFlight int

	mu           sync.Mutex
	handlers     map[string]*handler
	voteHandlers map[string]VoteHandlerFunc
	order        []string // capability names in Handle order, for a stable registration
	client       *Client
	key          ed25519.PrivateKey
	journal      *voteJournal
	name         string
	log          *slog.Logger
	readyCh      chan struct{} // closed while a Serve stream is ready
	closed       bool
	serving      atomic.Bool
	noAttach     atomic.Bool            // the node answered Attach with Unimplemented
	id           atomic.Pointer[string] // the registered id "<node>/<name>"
	node         atomic.Pointer[string] // the node the agent is attached to
	rand         func() float64
	initDone     bool
}

type handler struct {
	capability Capability
	fn         HandlerFunc       // nil for a streaming handler
	stream     StreamHandlerFunc // nil for a unary handler
	inFlight   atomic.Int32
}

// Handle adds a capability and the function that serves it. Add every
// capability before Register or Serve: later additions are sent with the
// next registration (a reconnect, or an explicit Register). Like
// http.ServeMux, it panics on an empty name, a nil handler or a duplicate.
func (a *Agent) Handle(capability Capability, h HandlerFunc) {
	if capability.Name == "" || h == nil {
		panic("agent: Handle needs a capability name and a non-nil handler")
	}
	a.add(&handler{capability: capability, fn: h})
}

func (a *Agent) add(h *handler) {
	capability := h.capability
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.handlers == nil {
		a.handlers = map[string]*handler{}
	}
	if _, dup := a.handlers[capability.Name]; dup {
		panic(fmt.Sprintf("agent: capability %q already has a handler", capability.Name))
	}
	a.handlers[capability.Name] = h
	a.order = append(a.order, capability.Name)
}

// Validate checks the configuration and the capabilities added so far.
// Register and Serve call it; it is exported so programs can fail fast.
func (a *Agent) Validate() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.validateLocked()
}

func (a *Agent) validateLocked() error {
	if a.Name != "" {
		if err := validName(a.Name); err != nil {
			return fmt.Errorf("agent: Name %q: %w", a.Name, err)
		}
	}
	if a.MaxInFlight < 0 {
		return fmt.Errorf("agent: MaxInFlight is %d: it must not be negative (0 means %d)", a.MaxInFlight, DefaultMaxInFlight)
	}
	if a.MaxVotesInFlight < 0 {
		return fmt.Errorf("agent: MaxVotesInFlight is %d: it must not be negative (0 means %d)", a.MaxVotesInFlight, DefaultMaxVotesInFlight)
	}
	if err := a.ReconnectBackoff.Validate(); err != nil {
		return err
	}
	if len(a.order) > maxCapabilities {
		return fmt.Errorf("agent: %d capabilities: at most %d per agent; split them across agents", len(a.order), maxCapabilities)
	}
	for _, name := range a.order {
		c := a.handlers[name].capability
		switch {
		case len(c.Name) > maxCapNameLen || !utf8.ValidString(c.Name) || strings.ContainsAny(c.Name, " \t\r\n"):
			return fmt.Errorf("agent: capability %q: the name must be 1-%d bytes of UTF-8 without spaces", c.Name, maxCapNameLen)
		case c.Cost < 0:
			return fmt.Errorf("agent: capability %q: Cost is %v: it must not be negative", c.Name, c.Cost)
		case c.MaxConcurrency < 0:
			return fmt.Errorf("agent: capability %q: MaxConcurrency is %d: it must not be negative (0 means unlimited)", c.Name, c.MaxConcurrency)
		}
	}
	return nil
}

func validName(s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("must be 1-%d bytes", maxNameLen)
	}
	for _, r := range s {
		if !nameRune(r) {
			return fmt.Errorf("%q is not allowed: use letters, digits, '.', '-' and '_'", r)
		}
	}
	return nil
}

func nameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
}

// programName derives a valid agent name from the executable's file name.
func programName(arg0 string) string {
	base := strings.TrimSuffix(filepath.Base(arg0), filepath.Ext(arg0))
	var b strings.Builder
	for _, r := range base {
		if b.Len() >= maxNameLen {
			break
		}
		if nameRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	if n := strings.Trim(b.String(), "-."); n != "" {
		return n
	}
	return defaultAgentName
}

// init validates the configuration and creates the client and the key,
// once. It does not block on the node: Serve may start before the node.
func (a *Agent) init() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.initDone {
		return nil
	}
	if err := a.validateLocked(); err != nil {
		return err
	}
	a.name = a.Name
	if a.name == "" && len(os.Args) > 0 {
		a.name = programName(os.Args[0])
	}
	a.log = a.Logger
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("agent", a.name)
	socket := a.Socket
	if socket == "" {
		socket = DefaultSocket()
	}
	keyFile, journalDir, err := a.statePaths(socket)
	if err != nil {
		return err
	}
	key, err := loadOrCreateKey(keyFile)
	if err != nil {
		return err
	}
	if a.journal, err = newVoteJournal(journalDir); err != nil {
		return err
	}
	c, err := newClient(socket, a.log, a.ReconnectBackoff)
	if err != nil {
		return err
	}
	a.client, a.key = c, key
	if a.rand == nil {
		a.rand = defaultRand
	}
	a.readyCh = make(chan struct{})
	a.initDone = true
	return nil
}

// Client returns the agent's client, for Discover, Watch, Status and
// ListAgents; its calls identify this agent as the caller.
func (a *Agent) Client() (*Client, error) {
	if err := a.init(); err != nil {
		return nil, err
	}
	return a.client, nil
}

// Call invokes a capability as this agent. From inside a handler, pass the
// handler's ctx so the call is linked to the one being handled.
func (a *Agent) Call(ctx context.Context, capability string, payload []byte, opts ...CallOption) (*CallResult, error) {
	c, err := a.Client()
	if err != nil {
		return nil, err
	}
	return c.Call(ctx, capability, payload, opts...)
}

// VotePublicKey returns the public half of the agent's vote signing key, the
// key registered with the node.
func (a *Agent) VotePublicKey() (ed25519.PublicKey, error) {
	if err := a.init(); err != nil {
		return nil, err
	}
	return a.key.Public().(ed25519.PublicKey), nil
}

// ID returns the id the node assigned ("<node>/<name>"), or "" before the
// first successful registration.
func (a *Agent) ID() string {
	if id := a.id.Load(); id != nil {
		return *id
	}
	return ""
}

// Register registers (or re-registers) the agent and its capabilities with
// the node, which commits it cluster-wide. Serve calls it on every
// (re)connect; call it directly to fail fast or to publish a new Handle.
func (a *Agent) Register(ctx context.Context) error {
	if err := a.init(); err != nil {
		return err
	}
	req, err := a.registerRequest()
	if err != nil {
		return err
	}
	resp, err := a.client.registry.Register(ctx, req)
	if err != nil {
		return fmt.Errorf("agent: register %q with the node at %s: %w", req.GetName(), a.client.socket, err)
	}
	id := resp.GetAgent().GetId()
	if id == "" {
		id = req.GetName()
	}
	node := resp.GetAgent().GetNode()
	a.id.Store(&id)
	a.node.Store(&node)
	a.client.agentID.Store(&id)
	return nil
}

func (a *Agent) registerRequest() (*meshnodev1.RegisterRequest, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.order) == 0 && len(a.voteHandlers) == 0 {
		return nil, ErrNoHandlers
	}
	if err := a.validateLocked(); err != nil {
		return nil, err
	}
	req := &meshnodev1.RegisterRequest{
		Name:          a.name,
		Roles:         append([]string(nil), a.Roles...),
		VotePublicKey: a.key.Public().(ed25519.PublicKey),
	}
	for _, name := range a.order {
		req.Capabilities = append(req.Capabilities, a.handlers[name].capability.proto())
	}
	return req, nil
}

// Deregister removes the agent from the registry at once, instead of after
// the node's grace period for a lost Serve stream. Call it after Serve has
// returned, when the agent is going away for good.
func (a *Agent) Deregister(ctx context.Context) error {
	if err := a.init(); err != nil {
		return err
	}
	id := a.ID()
	if id == "" {
		id = a.name
	}
	if _, err := a.client.registry.Deregister(ctx, &meshnodev1.DeregisterRequest{AgentId: id}); err != nil {
		return fmt.Errorf("agent: deregister %q: %w", id, err)
	}
	return nil
}

// Close releases the connection to the node. A running Serve returns
// ErrClosed. Close does not deregister (see Deregister).
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	if a.journal != nil {
		a.journal.close()
	}
	if a.client != nil {
		return a.client.Close()
	}
	return nil
}

func (a *Agent) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

func (a *Agent) handlerFor(capability string) *handler {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.handlers[capability]
}

// Up waits until a running Serve has registered the agent and the node has
// confirmed its Serve stream, so calls can reach it. After a disconnect it
// waits for the reconnect.
func (a *Agent) Up(ctx context.Context) error {
	if err := a.init(); err != nil {
		return err
	}
	a.mu.Lock()
	ch, closed := a.readyCh, a.closed
	a.mu.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agent: waiting for %q to be up: %w", a.name, ctx.Err())
	}
}

// setReady records whether a Serve stream is ready, for Up.
func (a *Agent) setReady(ready bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.readyCh:
		if !ready {
			a.readyCh = make(chan struct{})
		}
	default:
		if ready {
			close(a.readyCh)
		}
	}
}

var errAlreadyServing = errors.New("agent: Serve is already running for this Agent")
