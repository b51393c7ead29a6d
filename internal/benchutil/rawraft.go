package benchutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// RaftPeersEnv, set to "id=host:port,..." with RaftSelfEnv naming one of
// them, makes a test binary that calls ServeBaselineIfAsked from TestMain
// run a bare hashicorp/raft + raft-boltdb/v2 server (TCP transport, fsync
// on, an FSM that does nothing) and answer Status on BaselineEnv's socket
// by committing one entry, if it leads. Three of them are the floor for a
// Raft commit with every server in its own process.
const (
	RaftPeersEnv = "MESHNODE_BENCH_RAFT_PEERS"
	RaftSelfEnv  = "MESHNODE_BENCH_RAFT_SELF"
)

// RawRaftEntryBytes is the size of each committed entry: about a 4-voter
// decision's log entry.
const RawRaftEntryBytes = 1600

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (nopFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

// rawRaftStatus commits an entry per Status call.
type rawRaftStatus struct {
	meshnodev1.UnimplementedNodeServiceServer
	r     *raft.Raft
	entry []byte
}

func (s rawRaftStatus) Status(ctx context.Context, _ *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	if s.r.State() != raft.Leader {
		return nil, status.Error(codes.FailedPrecondition, "not the leader")
	}
	if err := s.r.Apply(s.entry, 5*time.Second).Error(); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &meshnodev1.StatusResponse{}, nil
}

func serveRawRaft(socket, self, peers string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "raw raft:", err); return 1 }
	var conf raft.Configuration
	addr := ""
	for _, p := range strings.Split(peers, ",") {
		id, a, ok := strings.Cut(p, "=")
		if !ok {
			return fail(fmt.Errorf("bad peer %q", p))
		}
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(a)})
		if id == self {
			addr = a
		}
	}
	if addr == "" {
		return fail(fmt.Errorf("%s is not among the peers %s", self, peers))
	}
	dir := filepath.Join(filepath.Dir(socket), "raft-"+self)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	trans, err := raft.NewTCPTransport(addr, nil, 4, 10*time.Second, io.Discard)
	if err != nil {
		return fail(err)
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(self)
	cfg.LogOutput = io.Discard
	if err := raft.BootstrapCluster(cfg, store, store, raft.NewInmemSnapshotStore(), trans, conf); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fail(err)
	}
	r, err := raft.NewRaft(cfg, nopFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		return fail(err)
	}
	defer r.Shutdown()
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fail(err)
	}
	s := grpc.NewServer()
	meshnodev1.RegisterNodeServiceServer(s, rawRaftStatus{r: r, entry: make([]byte, RawRaftEntryBytes)})
	go s.Serve(l)
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // until the parent goes away
	s.Stop()
	return 0
}

// StartRawRaft runs three bare Raft servers, each a process of this test
// binary on loopback TCP, waits for a leader, and returns a call that
// commits one RawRaftEntryBytes entry through it. The pids are the three
// servers'.
func StartRawRaft(tb testing.TB, dir string) (commit func(context.Context) error, pids []int) {
	tb.Helper()
	var peers []string
	for i := range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		peers = append(peers, fmt.Sprintf("r%d=%s", i, l.Addr()))
		l.Close()
	}
	var calls []func(context.Context) error
	for i := range 3 {
		sock := filepath.Join(dir, fmt.Sprintf("raw-raft-%d.sock", i))
		pids = append(pids, startChild(tb, sock, RaftSelfEnv+"="+fmt.Sprintf("r%d", i), RaftPeersEnv+"="+strings.Join(peers, ",")))
		calls = append(calls, dialStatus(tb, sock))
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, c := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c(ctx)
			cancel()
			if err == nil {
				return c, pids
			}
		}
	}
	tb.Fatal("the bare Raft servers elected no leader within 30 s")
	return nil, nil
}
