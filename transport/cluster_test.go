package transport_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type logFSM struct {
	mu      sync.Mutex
	entries []string
}

func (f *logFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return nil
}
func (f *logFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (f *logFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }
func (f *logFSM) has(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		if e == s {
			return true
		}
	}
	return false
}

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

func TestRaftClusterOverQUIC(t *testing.T) {
	const n = 3
	eps := make([]*transport.Endpoint, n)
	var servers []raft.Server
	for i := range n {
		eps[i] = transporttest.NewEndpoint(t, fmt.Sprintf("r%d", i))
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("r%d", i)), Address: raft.ServerAddress(eps[i].Addr().String())})
	}
	rafts := make([]*raft.Raft, n)
	fsms := make([]*logFSM, n)
	for i := range n {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = 500 * time.Millisecond
		conf.ElectionTimeout = 500 * time.Millisecond
		conf.LeaderLeaseTimeout = 250 * time.Millisecond
		conf.CommitTimeout = 10 * time.Millisecond
		conf.Logger = hclog.NewNullLogger()
		trans := raft.NewNetworkTransport(eps[i].RaftLayer(), 3, 2*time.Second, io.Discard)
		store := raft.NewInmemStore()
		fsms[i] = &logFSM{}
		r, err := raft.NewRaft(conf, fsms[i], store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		rafts[i] = r
		t.Cleanup(func() { r.Shutdown().Error() })
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	leader := func() *raft.Raft {
		var l *raft.Raft
		waitFor(t, 15*time.Second, "a leader", func() bool {
			for _, r := range rafts {
				if r.State() == raft.Leader {
					l = r
					return true
				}
			}
			return false
		})
		return l
	}
	for i := range 10 {
		entry := []byte(fmt.Sprintf("entry-%d", i))
		// A re-election on this shared 2-core machine is Raft working, not
		// the transport failing: retry on the new leader.
		err := leader().Apply(entry, 5*time.Second).Error()
		for try := 0; err != nil && try < 3 && (errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader)); try++ {
			err = leader().Apply(entry, 5*time.Second).Error()
		}
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	waitFor(t, 10*time.Second, "replication to every FSM", func() bool {
		for _, f := range fsms {
			if !f.has("entry-9") {
				return false
			}
		}
		return true
	})
}

func TestMemberlistConvergesOverQUIC(t *testing.T) {
	const n = 5
	lists := make([]*memberlist.Memberlist, n)
	msgs := &msgDelegate{got: make(chan []byte, 16)}
	for i := range n {
		e := transporttest.NewEndpoint(t, fmt.Sprintf("m%d", i))
		conf := memberlist.DefaultLocalConfig()
		conf.Name = fmt.Sprintf("m%d", i)
		conf.Transport = e.Memberlist()
		conf.LogOutput = io.Discard
		conf.ProbeInterval = 200 * time.Millisecond
		conf.GossipInterval = 50 * time.Millisecond
		conf.PushPullInterval = 2 * time.Second
		if i == 2 {
			conf.Delegate = msgs
		}
		ml, err := memberlist.Create(conf)
		if err != nil {
			t.Fatal(err)
		}
		lists[i] = ml
		t.Cleanup(func() { ml.Shutdown() })
		if i > 0 {
			if _, err := ml.Join([]string{lists[0].LocalNode().Address()}); err != nil {
				t.Fatalf("m%d join: %v", i, err)
			}
		}
	}
	waitFor(t, 20*time.Second, "5 memberlist nodes to converge", func() bool {
		for _, ml := range lists {
			if ml.NumMembers() != n {
				return false
			}
		}
		return true
	})
	// A large user message exceeds a datagram and takes the stream fallback.
	big := strings.Repeat("x", 4000)
	if err := lists[1].SendBestEffort(lists[2].LocalNode(), []byte(big)); err != nil {
		t.Fatalf("sending a large packet: %v", err)
	}
	select {
	case m := <-msgs.got:
		if string(m) != big {
			t.Fatalf("large packet arrived with %d bytes, want %d", len(m), len(big))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("large packet never arrived")
	}
}

type msgDelegate struct{ got chan []byte }

func (d *msgDelegate) NodeMeta(int) []byte { return nil }
func (d *msgDelegate) NotifyMsg(b []byte) {
	select {
	case d.got <- append([]byte(nil), b...):
	default:
	}
}
func (d *msgDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *msgDelegate) LocalState(bool) []byte          { return nil }
func (d *msgDelegate) MergeRemoteState([]byte, bool)   {}
