package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

// Config configures a Store. Zero values mean the documented defaults.
type Config struct {
	// Name is this node's name, unique in the cluster; servers use it as
	// their Raft server id. Required.
	Name string
	// Server makes this node a Raft member. Otherwise it is a client that
	// keeps a replica fed by a server and forwards writes.
	Server bool
	// Bootstrap makes a server with no Raft state bootstrap a one-voter
	// cluster. Only the first server of a new cluster sets it; others wait
	// to be added by the leader's autopilot.
	Bootstrap bool
	// DataDir holds <DataDir>/raft (bolt log, stable store, snapshots).
	// Required for servers.
	DataDir string
	// Advertise is this server's Raft address as peers dial it. Default:
	// the stream layer's address.
	Advertise string
	// Voters is how many voters the autopilot keeps (1, 3, 5 or 7). Default 3.
	Voters int
	// ServerAddrs are servers a client may subscribe to and forward to before
	// any ServerAlive event arrives. Optional.
	ServerAddrs []string

	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout are Raft's
	// timers. Defaults 1s, 1s, 500ms (hashicorp/raft's LAN values).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long a follower waits for a heartbeat that
	// carries the commit index. Default 50ms.
	CommitTimeout time.Duration
	// SnapshotInterval and SnapshotThreshold: Raft checks every interval and
	// snapshots when more than threshold entries were logged since the last
	// one. Defaults 30s and 8192.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	// TrailingLogs is how many entries stay in the log after a snapshot, so a
	// briefly absent follower catches up from the log. Default 10240.
	TrailingLogs uint64
	// SnapshotsRetained is how many snapshot files are kept. Default 2.
	SnapshotsRetained int

	// ApplyTimeout bounds a write (including retries across leader changes)
	// when the caller's context has no deadline. Default 10s.
	ApplyTimeout time.Duration
	// MaxBatch is the most commands put in one log entry. Default 512.
	MaxBatch int
	// MaxInflight is how many log entries (or forwarded batches) may be in
	// flight at once; while they are, new writes queue and form larger
	// batches. Default 2 (docs/consensus.md, Batching, says why).
	MaxInflight int

	// ServerStabilization is how long a server must be healthy before the
	// autopilot promotes it to voter. Default 10s.
	ServerStabilization time.Duration
	// DeadServerGrace is how long a failed server stays in the Raft
	// configuration before the autopilot removes it. Default 2m.
	DeadServerGrace time.Duration
	// AutopilotInterval is how often the leader's autopilot runs. Default 1s.
	AutopilotInterval time.Duration
	// RequireServerAdmission makes the autopilot add a server to Raft only
	// if the state records its admission (a UseToken command naming it as a
	// server). Servers already in the configuration stay. Off, every server
	// that ServerAlive reports is added: for clusters whose membership is
	// trusted some other way (tests).
	RequireServerAdmission bool
	// MaxTrailingLogs is how far a server's log may trail the leader's and
	// still count as healthy. Default 500.
	MaxTrailingLogs uint64

	// ChangeLogSize is how many recent change events are kept for watches and
	// replicas to resume from. Default 8192.
	ChangeLogSize int
	// ReplicaHeartbeat is how often an idle change stream carries the
	// server's index (the replica's lag measure). Default 1s.
	ReplicaHeartbeat time.Duration

	// Logger receives the store's and Raft's logs. Default: discard.
	Logger *slog.Logger
	// Clock is the time source: the leader stamps each log entry with its
	// Now (tokens and dedup keys expire by it), and the autopilot and
	// replica lag read it. Default: clock.System.
	Clock clock.Clock
}

// DefaultConfig returns the defaults for a node named name.
func DefaultConfig(name string) Config {
	return Config{Name: name}.withDefaults()
}

func (c Config) withDefaults() Config {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	if c.Voters == 0 {
		c.Voters = 3
	}
	def(&c.HeartbeatTimeout, time.Second)
	def(&c.ElectionTimeout, time.Second)
	def(&c.LeaderLeaseTimeout, 500*time.Millisecond)
	def(&c.CommitTimeout, 50*time.Millisecond)
	def(&c.SnapshotInterval, 30*time.Second)
	def(&c.ApplyTimeout, 10*time.Second)
	def(&c.ServerStabilization, 10*time.Second)
	def(&c.DeadServerGrace, 2*time.Minute)
	def(&c.AutopilotInterval, time.Second)
	def(&c.ReplicaHeartbeat, time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.SnapshotsRetained == 0 {
		c.SnapshotsRetained = 2
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 2
	}
	if c.MaxTrailingLogs == 0 {
		c.MaxTrailingLogs = 500
	}
	if c.ChangeLogSize == 0 {
		c.ChangeLogSize = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.OrSystem(c.Clock)
	return c
}

// Validate checks the configuration after defaults are applied, naming the
// offending field.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Name == "" {
		bad("consensus: Name is required")
	}
	if c.Server && c.DataDir == "" {
		bad("consensus: DataDir is required for a server")
	}
	if !c.Server && c.Bootstrap {
		bad("consensus: Bootstrap requires Server: only a server can bootstrap a cluster")
	}
	switch c.Voters {
	case 1, 3, 5, 7:
	default:
		bad("consensus: Voters is %d, want 1, 3, 5 or 7 (an odd number keeps a majority after a split)", c.Voters)
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		bad("consensus: LeaderLeaseTimeout (%s) cannot be larger than HeartbeatTimeout (%s)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		bad("consensus: ElectionTimeout (%s) must be at least HeartbeatTimeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.MaxBatch < 1 || c.MaxBatch > maxBatchCommands/2 {
		bad("consensus: MaxBatch is %d, want 1-%d", c.MaxBatch, maxBatchCommands/2)
	}
	if c.MaxInflight < 1 {
		bad("consensus: MaxInflight is %d, want at least 1", c.MaxInflight)
	}
	if c.ChangeLogSize < 16 {
		bad("consensus: ChangeLogSize is %d, want at least 16", c.ChangeLogSize)
	}
	if c.DeadServerGrace < c.ServerStabilization {
		bad("consensus: DeadServerGrace (%s) must be at least ServerStabilization (%s)", c.DeadServerGrace, c.ServerStabilization)
	}
	return errors.Join(errs...)
}
