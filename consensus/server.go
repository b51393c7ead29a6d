package consensus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// server is the Raft side of a server-mode store.
type server struct {
	s     *Store
	raft  *raft.Raft
	trans *raft.NetworkTransport
	bolt  *raftboltdb.BoltStore
	local *batcher
	// readyTerm is the term in which this leader's barrier completed: from
	// then on its state holds every entry committed before the term, so a
	// leadership check is enough for a linearizable local read.
	readyTerm atomic.Uint64
	ap        autopilotState
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func (s *Store) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.Name)
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = s.cfg.CommitTimeout
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.TrailingLogs = s.cfg.TrailingLogs
	rc.Logger = HCLogAdapter(s.cfg.Logger.With("component", "raft", "node", s.cfg.Name))
	return rc
}

// logCacheEntries is how many recent log entries stay in memory (Consul
// keeps 512 too): enough for every entry still being replicated.
const logCacheEntries = 512

// startServer opens the bolt log (fsync on every write: raft-boltdb's
// default; NoSync is never set), the snapshot store and Raft.
func (s *Store) startServer() (*server, error) {
	dir := filepath.Join(s.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating raft directory %s: %w", dir, err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("opening raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	rc := s.raftConfig()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, s.cfg.SnapshotsRetained, rc.Logger.Named("snapshot"))
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("opening snapshot store in %s: %w", dir, err)
	}
	layer := s.net.StreamLayer()
	if layer == nil {
		bolt.Close()
		return nil, errors.New("consensus: the network has no Raft stream layer; a server needs one")
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 4, Timeout: 10 * time.Second, Logger: rc.Logger.Named("transport"),
	})
	advertise := s.cfg.Advertise
	if advertise == "" {
		advertise = string(trans.LocalAddr())
	}
	if s.cfg.Bootstrap {
		has, err := raft.HasExistingState(bolt, bolt, snaps)
		if err != nil {
			trans.Close()
			bolt.Close()
			return nil, fmt.Errorf("checking for existing raft state in %s: %w", dir, err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(advertise)}}}
			if err := raft.BootstrapCluster(rc, bolt, bolt, snaps, trans, conf); err != nil {
				trans.Close()
				bolt.Close()
				return nil, fmt.Errorf("bootstrapping a one-server cluster: %w", err)
			}
			s.logger.Info("bootstrapped a new cluster", "address", advertise)
		}
	}
	var logs raft.LogStore = bolt
	if s.wrapLogStore != nil {
		logs = s.wrapLogStore(bolt)
	}
	// The leader's replicators read back each entry it has just written,
	// and a follower may read its last one; the cache serves both from
	// memory instead of a bolt read transaction on the commit path.
	logs, err = raft.NewLogCache(logCacheEntries, logs)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("creating the raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, &fsm{st: s.st, logger: s.logger}, logs, bolt, snaps, trans)
	if err != nil {
		trans.Close()
		bolt.Close()
		return nil, fmt.Errorf("starting raft: %w", err)
	}
	srv := &server{s: s, raft: r, trans: trans, bolt: bolt}
	srv.local = newBatcher(srv.proposeLocal, s.cfg.MaxBatch, s.cfg.MaxInflight)
	s.members.set(s.cfg.Name, advertise, MemberAlive)
	srv.wg.Add(2)
	go srv.watchLeadership()
	go srv.autopilotLoop()
	return srv, nil
}

func (srv *server) isLeader() bool { return srv.raft.State() == raft.Leader }

func (srv *server) close() error {
	var err error
	srv.closeOnce.Do(func() {
		// Raft first: its shutdown fails pending futures, which the
		// batcher's in-flight proposals wait on (without a quorum they
		// would wait forever).
		err = srv.raft.Shutdown().Error()
		srv.local.close()
		srv.wg.Wait()
		if cerr := srv.trans.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if cerr := srv.bolt.Close(); cerr != nil && err == nil {
			err = cerr
		}
	})
	return err
}

// proposeLocal writes one log entry holding cmds and waits until it is
// committed and applied here.
func (srv *server) proposeLocal(cmds []*meshnodev1.Command) ([]*meshnodev1.CommandResult, error) {
	if !srv.isLeader() {
		return nil, ErrNotLeader
	}
	batch := &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: srv.s.cfg.Clock.Now().UnixNano(), Commands: cmds}
	data, err := proto.Marshal(batch)
	if err != nil {
		return nil, fmt.Errorf("encoding log entry: %w", err)
	}
	f := srv.raft.Apply(data, srv.s.cfg.ApplyTimeout)
	// Raft fails the future when this server loses leadership, but an
	// entry it had committed and handed to its FSM goroutine when it shut
	// down is never answered (that goroutine returns on shutdown without
	// draining its queue). So the wait also ends when the store closes:
	// close shuts raft down, then waits for the batcher, which waits here.
	// One goroutine per proposal (a batch of writes), not per write.
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, raftError(err)
		}
	case <-srv.s.ctx.Done():
		return nil, ErrClosed
	}
	resp, ok := f.Response().(applyResponse)
	if !ok {
		return nil, fmt.Errorf("unexpected apply response %T", f.Response())
	}
	if resp.err != nil {
		return nil, resp.err
	}
	if len(resp.results) != len(cmds) {
		return nil, fmt.Errorf("applied %d commands, proposed %d", len(resp.results), len(cmds))
	}
	return resp.results, nil
}

// raftError maps raft's errors onto ours: leadership problems are
// retryable, anything else from the log store is a storage failure.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNoLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%w: %v", ErrStorage, err)
}

// watchLeadership runs a barrier each time this server becomes leader, and
// only then marks it ready for consistent reads.
func (srv *server) watchLeadership() {
	defer srv.wg.Done()
	for {
		select {
		case <-srv.s.ctx.Done():
			return
		case leader := <-srv.raft.LeaderCh():
			if !leader {
				continue
			}
			term := srv.raft.CurrentTerm()
			if err := srv.await(srv.s.ctx, srv.raft.Barrier(srv.s.cfg.ApplyTimeout)); err != nil {
				srv.s.logger.Warn("leader barrier failed", "term", term, "err", err)
				continue
			}
			srv.readyTerm.Store(term)
			srv.s.logger.Info("leading", "term", term, "index", srv.s.st.index())
		}
	}
}

// verifiedIndex confirms this server still leads and returns an index that
// includes every write acknowledged before the call.
//
// It commits a barrier rather than only calling VerifyLeader: hashicorp/raft
// applies committed entries to the FSM asynchronously, so a follower can
// apply (and serve) an entry before the leader's own FSM has, and the
// leader's applied index alone can miss a write another node already shows.
// A barrier commits through a quorum (confirming leadership) and returns
// once every entry before it is applied here. Concurrent barriers share log
// batches, so the cost is one replication round, not one per read.
func (srv *server) verifiedIndex(ctx context.Context) (uint64, error) {
	for {
		if srv.readyTerm.Load() == srv.raft.CurrentTerm() {
			if err := srv.await(ctx, srv.raft.Barrier(0)); err != nil {
				return 0, raftError(err)
			}
			return srv.s.st.index(), nil
		}
		if err := srv.await(ctx, srv.raft.VerifyLeader()); err != nil {
			return 0, raftError(err)
		}
		// Freshly elected: the leadership barrier is still running.
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		}
	}
}

// isServer reports whether the named node is in the Raft configuration.
func (srv *server) isServer(name string) bool {
	f := srv.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, sv := range f.Configuration().Servers {
		if string(sv.ID) == name {
			return true
		}
	}
	return false
}

// await waits for a raft future, but no longer than ctx or the store's life.
// A future that raft never answers (seen with VerifyLeader racing a
// shutdown) then costs one parked goroutine instead of a stuck caller.
func (srv *server) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-srv.s.ctx.Done():
		return raft.ErrRaftShutdown
	}
}
