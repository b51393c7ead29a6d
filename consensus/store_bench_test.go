package consensus

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/transport/transporttest"
)

// benchWindow is how long each side of a throughput comparison runs.
const benchWindow = time.Second

// BenchmarkRegistryWrites compares registry writes through the Store
// (batching, protobuf commands, memdb FSM) with raw hashicorp/raft +
// raft-boltdb (one Apply per write, trivial FSM), both on 3 servers over
// the same QUIC transport, fsync on, same payload size, same run.
func BenchmarkRegistryWrites(b *testing.B) {
	for _, writers := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			for range b.N {
				c := newCluster(b, 3, 0, nil)
				l := c.leader()
				payload := make([]byte, proto.Size(agentCmd("n1/w000-00000", "bench"))+16)
				raw := newRawCluster(b, 3)
				rl := raw.leader()
				// Alternate short windows so that disk and CPU noise from the
				// shared machine hits both sides alike.
				var ours, base throughput
				for round := range benchRounds {
					ours.add(runWriters(writers, func(ctx context.Context, w, i int) error {
						_, _, err := l.store.Apply(ctx, agentCmd(fmt.Sprintf("n1/w%d-%d-%d", w, round, i), "bench"))
						return err
					}))
					base.add(runWriters(writers, func(ctx context.Context, _, _ int) error {
						return rl.Apply(payload, 5*time.Second).Error()
					}))
				}
				b.ReportMetric(float64(l.store.srv.local.commands.Load())/float64(l.store.srv.local.proposals.Load()), "cmds/entry")
				c.close()
				raw.close()
				b.ReportMetric(ours.rate(), "writes/s")
				b.ReportMetric(base.rate(), "baseline-writes/s")
				b.ReportMetric(ours.rate()/base.rate(), "ratio")
				b.ReportMetric(pct(ours.lat, 50), "p50-us")
				b.ReportMetric(pct(ours.lat, 99), "p99-us")
				b.ReportMetric(pct(base.lat, 50), "baseline-p50-us")
				b.ReportMetric(pct(base.lat, 99), "baseline-p99-us")
			}
		})
	}
}

const benchRounds = 4

type throughput struct {
	ops     int64
	elapsed time.Duration
	lat     []float64
}

func (t *throughput) add(ops int64, elapsed time.Duration, lat []float64) {
	t.ops += ops
	t.elapsed += elapsed
	t.lat = append(t.lat, lat...)
}

func (t *throughput) rate() float64 { return float64(t.ops) / t.elapsed.Seconds() }

// BenchmarkFailover measures leader kill -> first successful write through
// another server, beside the same for raw raft with identical timers.
func BenchmarkFailover(b *testing.B) {
	for range b.N {
		c := newCluster(b, 3, 0, nil)
		l := c.leader()
		mustApply(b, l.store, agentCmd("n1/warm", "x"))
		var other *testNode
		for _, s := range c.servers() {
			if s != l {
				other = s
			}
		}
		start := time.Now()
		c.kill(l)
		mustApply(b, other.store, agentCmd("n1/after", "x"))
		ours := time.Since(start)
		c.close()

		raw := newRawCluster(b, 3)
		rl := raw.leader()
		start = time.Now()
		rl.Shutdown()
		var base time.Duration
		for base == 0 {
			for _, r := range raw.rafts {
				if r != rl && r.State() == raft.Leader && r.Apply([]byte("x"), time.Second).Error() == nil {
					base = time.Since(start)
				}
			}
			time.Sleep(time.Millisecond) // polling the raw cluster for a new leader
		}
		raw.close()
		b.ReportMetric(float64(ours.Milliseconds()), "failover-ms")
		b.ReportMetric(float64(base.Milliseconds()), "baseline-failover-ms")
		b.ReportMetric(float64(ours)/float64(base), "ratio")
	}
}

// runWriters runs op from n goroutines for benchWindow and returns the
// completed ops, the time taken and each op's latency in microseconds.
func runWriters(n int, op func(ctx context.Context, w, i int) error) (int64, time.Duration, []float64) {
	ctx, cancel := context.WithTimeout(context.Background(), benchWindow)
	defer cancel()
	var done atomic.Int64
	var mu sync.Mutex
	var lat []float64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []float64
			for i := 0; ctx.Err() == nil; i++ {
				t0 := time.Now()
				if op(context.Background(), w, i) == nil {
					done.Add(1)
					mine = append(mine, float64(time.Since(t0).Microseconds()))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return done.Load(), time.Since(start), lat
}

func pct(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// rawCluster is plain hashicorp/raft + raft-boltdb with a trivial FSM over
// the same QUIC stream layer: the baseline.
type rawCluster struct {
	rafts  []*raft.Raft
	trans  []*raft.NetworkTransport
	stores []*raftboltdb.BoltStore
}

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

func newRawCluster(b *testing.B, n int) *rawCluster {
	b.Helper()
	rc := &rawCluster{}
	var conf raft.Configuration
	for i := range n {
		name := fmt.Sprintf("raw%d", i)
		ep := transporttest.NewEndpoint(b, name)
		tr := raft.NewNetworkTransport(ep.RaftLayer(), 4, 10*time.Second, io.Discard)
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(name), Address: tr.LocalAddr()})
		rc.trans = append(rc.trans, tr)
	}
	for i, tr := range rc.trans {
		dir := b.TempDir()
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			b.Fatal(err)
		}
		snaps := raft.NewInmemSnapshotStore()
		s := &Store{cfg: fastConfig(b, string(conf.Servers[i].ID), true).withDefaults()}
		cfg := s.raftConfig()
		if err := raft.BootstrapCluster(cfg, bolt, bolt, snaps, tr, conf); err != nil {
			b.Fatal(err)
		}
		r, err := raft.NewRaft(cfg, nopFSM{}, bolt, bolt, snaps, tr)
		if err != nil {
			b.Fatal(err)
		}
		rc.rafts, rc.stores = append(rc.rafts, r), append(rc.stores, bolt)
	}
	rc.leader()
	return rc
}

func (rc *rawCluster) leader() *raft.Raft {
	for {
		for _, r := range rc.rafts {
			if r.State() == raft.Leader {
				return r
			}
		}
		time.Sleep(time.Millisecond) // polling for the first election
	}
}

func (rc *rawCluster) close() {
	for i, r := range rc.rafts {
		r.Shutdown().Error()
		rc.trans[i].Close()
		rc.stores[i].Close()
	}
}
