package consensus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Store is the node's view of the replicated state: on a server it runs a
// Raft member, on a client a replica fed by a server. Both serve reads
// locally, forward writes and deliver watches.
type Store struct {
	cfg     Config
	net     Network
	logger  *slog.Logger
	st      *state
	members *members
	srv     *server  // servers only
	rep     *replica // clients only
	fwd     *batcher // forwarded writes (to the leader, or from a client to a server)

	// wrapLogStore lets tests inject log store failures (disk full).
	wrapLogStore func(raft.LogStore) raft.LogStore

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
	running atomic.Bool // set once Start has finished setting up
	closed  atomic.Bool
}

// New validates cfg and builds a store; Start brings it up.
func New(cfg Config, net Network) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if net == nil {
		return nil, errors.New("consensus: a Network is required")
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:     cfg,
		net:     net,
		logger:  cfg.Logger.With("component", "consensus", "node", cfg.Name),
		st:      newState(cfg.ChangeLogSize),
		members: newMembers(cfg.Clock),
	}
	for _, a := range cfg.ServerAddrs {
		s.members.seed(a)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start opens Raft (servers) or starts following a server (clients), and
// registers the peer handlers. The context bounds start-up only.
func (s *Store) Start(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("consensus: Start called twice")
	}
	s.fwd = newBatcher(s.proposeForward, s.cfg.MaxBatch, s.cfg.MaxInflight)
	if s.cfg.Server {
		srv, err := s.startServer()
		if err != nil {
			s.fwd.close()
			return err
		}
		s.srv = srv
		// Handlers read s.srv: register them only now.
		s.registerServerHandlers()
		s.running.Store(true)
		return nil
	}
	s.rep = s.startReplica()
	s.running.Store(true)
	return ctx.Err()
}

// Close stops the store. On a server it shuts Raft down and closes its files.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.cancel()
	var err error
	if s.fwd != nil {
		s.fwd.close()
	}
	if s.srv != nil {
		err = s.srv.close()
	}
	s.wg.Wait()
	return err
}

// IsServer reports whether this store runs a Raft member.
func (s *Store) IsServer() bool { return s.cfg.Server }

// Index is the last index applied to the local state.
func (s *Store) Index() uint64 { return s.st.index() }

// Apply commits cmd through Raft from any node and returns the index of the
// log entry that applied it with its result. It retries across leader
// changes until ctx ends (Config.ApplyTimeout if ctx has no deadline); the
// idempotency key (set here if empty) makes the retries apply once. When
// the state machine applied the command with an outcome other than OK the
// error is a *RefusedError (errors.Is ErrTokenUsed, ErrNotFound or
// ErrInvalidCommand) and the result is returned too. A zero cmd.Version
// means the current CommandVersion. Prefer the typed methods (writes.go):
// they build the command and return the committed record.
func (s *Store) Apply(ctx context.Context, cmd *meshnodev1.Command) (uint64, *meshnodev1.CommandResult, error) {
	if s.closed.Load() {
		return 0, nil, ErrClosed
	}
	if !s.running.Load() {
		return 0, nil, errors.New("consensus: Apply before Start")
	}
	cmd = proto.CloneOf(cmd)
	if cmd.GetVersion() == 0 {
		cmd.Version = CommandVersion
	}
	if cmd.GetIdempotencyKey() == "" {
		cmd.IdempotencyKey = randomKey()
	}
	// A node's writes come from it; a server that receives them from a
	// client stamps the client's authenticated name over this.
	cmd.Origin = s.cfg.Name
	if err := ValidateCommand(cmd); err != nil {
		return 0, nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.ApplyTimeout)
		defer cancel()
	}
	backoff := 10 * time.Millisecond
	for {
		results, err := s.applyOnce(ctx, []*meshnodev1.Command{cmd})
		if err == nil {
			r := proto.CloneOf(results[0])
			return r.GetIndex(), r, resultError(r)
		}
		if ctx.Err() != nil {
			// Nothing committed the write in time: almost always a lost
			// quorum. Its outcome is unknown; a retry with the same
			// idempotency key applies it at most once.
			return 0, nil, fmt.Errorf("applying command %s (outcome unknown): %w", cmd.GetIdempotencyKey(), errors.Join(ErrNoLeader, ctx.Err()))
		}
		if !retryable(err) {
			return 0, nil, fmt.Errorf("applying command %s: %w", cmd.GetIdempotencyKey(), fromStatus(err))
		}
		s.logger.Debug("retrying write", "key", cmd.GetIdempotencyKey(), "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		case <-s.ctx.Done():
			t.Stop()
			return 0, nil, ErrClosed
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// applyOnce proposes locally when this server leads, and forwards otherwise.
func (s *Store) applyOnce(ctx context.Context, cmds []*meshnodev1.Command) ([]*meshnodev1.CommandResult, error) {
	if s.srv != nil && s.srv.isLeader() {
		return s.srv.local.submit(ctx, cmds)
	}
	return s.fwd.submit(ctx, cmds)
}

// proposeForward sends a batch to the leader (servers) or to a server
// (clients, whose server forwards on).
func (s *Store) proposeForward(cmds []*meshnodev1.Command) ([]*meshnodev1.CommandResult, error) {
	addr, err := s.forwardTarget()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ApplyTimeout)
	defer cancel()
	var resp meshnodev1.ForwardApplyResponse
	if err := call(ctx, s.net, addr, MethodApply, &meshnodev1.ForwardApplyRequest{Commands: cmds}, &resp); err != nil {
		if retryable(err) && s.srv == nil {
			s.members.avoid(addr)
		}
		return nil, err
	}
	if len(resp.GetResults()) != len(cmds) {
		return nil, fmt.Errorf("%s answered %d results for %d commands", addr, len(resp.GetResults()), len(cmds))
	}
	return resp.GetResults(), nil
}

// forwardTarget is the leader's address on a server, a live server's on a
// client.
func (s *Store) forwardTarget() (string, error) {
	if s.srv != nil {
		addr, _ := s.srv.raft.LeaderWithID()
		if addr == "" {
			return "", ErrNoLeader
		}
		return string(addr), nil
	}
	addr := s.members.pick()
	if addr == "" {
		return "", fmt.Errorf("%w: this client knows no live server", ErrNoLeader)
	}
	return addr, nil
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
