package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Scenario benchmarks: N nodes in one process on 127.0.0.1. Each run
// measures, for our preset (DefaultConfig, the LAN preset the product ships)
// and for memberlist's stock DefaultLANConfig timings (the baseline), in the
// same run:
//
//   - join-ms: from the first Join call until every node sees all N alive;
//   - crash-ms: from a node's crash (Shutdown without Leave, endpoint closed)
//     until every other node has declared it dead;
//   - load99-p50/p99-ms and loadall-p50/p99-ms: from SetLocalLoad on one node
//     until 99% of the N nodes (the origin counts as one) / all of the other
//     nodes have applied the update, over
//     loadUpdates updates from random nodes, after the cluster settled;
//   - load-after-join-ms: the same, to all nodes, for one update sent the
//     moment the join converged (membership broadcasts still queued);
//   - B/s/node: gossip bytes sent per node per second (packets + streams)
//     while the update stream runs;
//   - false-deaths: fail events for nodes that never crashed, summed over
//     all observers, during the whole run (target 0).
//
// The transport is QUIC (the product's) unless GOSSIP_BENCH_TRANSPORT=udp
// selects memberlist's NetTransport; the metric names say which ("quic" or
// "udp" suffix on the preset name).

const (
	joinWave    = 10
	loadUpdates = 20
	updateWait  = 5 * time.Second
	// settle lets the join storm's membership broadcasts drain before the
	// steady-state updates (12 sends each at N=100, 4 per 100 ms round).
	settle = 2 * time.Second
)

func BenchmarkCluster20(b *testing.B)  { benchCluster(b, 20) }
func BenchmarkCluster50(b *testing.B)  { benchCluster(b, 50) }
func BenchmarkCluster100(b *testing.B) { benchCluster(b, 100) }

// memberlistLAN is memberlist's DefaultLANConfig timing, expressed in our Config.
func memberlistLAN() Config {
	c := DefaultConfig()
	c.ProbeInterval, c.ProbeTimeout = time.Second, 500*time.Millisecond
	c.SuspicionMult, c.SuspicionMaxTimeoutMult = 4, 6
	c.GossipInterval, c.GossipNodes, c.RetransmitMult = 200*time.Millisecond, 3, 4
	c.PushPullInterval = 30 * time.Second
	return c
}

// benchTransport: QUIC up to quicMaxNodes nodes, memberlist's UDP/TCP
// NetTransport above (see docs/gossip.md: 100 QUIC endpoints in one process
// on 2 cores dial 4,950 connections at once, and that handshake storm, not
// gossip, decides the join). Override with GOSSIP_BENCH_TRANSPORT=quic|udp.
func benchTransport(n int) transportKind {
	switch os.Getenv("GOSSIP_BENCH_TRANSPORT") {
	case "udp":
		return overUDP
	case "quic":
		return overQUIC
	}
	if n <= quicMaxNodes {
		return overQUIC
	}
	return overUDP
}

const quicMaxNodes = 50

func benchCluster(b *testing.B, n int) {
	kind := benchTransport(n)
	suffix := map[transportKind]string{overQUIC: "quic", overUDP: "udp"}[kind]
	for range b.N {
		ours := runScenario(b, n, kind, DefaultConfig())
		base := runScenario(b, n, kind, memberlistLAN())
		report(b, "", ours)
		report(b, "base-", base)
		b.ReportMetric(ratio(base.crash, ours.crash), "crash-speedup")
		b.ReportMetric(ratio(base.load99p99, ours.load99p99), "load99p99-speedup")
		b.ReportMetric(ratio(ours.bytesPerSec, base.bytesPerSec), "bytes-ratio")
		b.Logf("n=%d transport=%s ours=%+v baseline(memberlist LAN)=%+v", n, suffix, ours, base)
	}
}

func report(b *testing.B, prefix string, r scenarioResult) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(r.join), prefix+"join-ms")
	b.ReportMetric(ms(r.crash), prefix+"crash-ms")
	b.ReportMetric(ms(r.loadAfterJoin), prefix+"load-after-join-ms")
	b.ReportMetric(ms(r.load99p50), prefix+"load99-p50-ms")
	b.ReportMetric(ms(r.load99p99), prefix+"load99-p99-ms")
	b.ReportMetric(ms(r.loadAllp50), prefix+"loadall-p50-ms")
	b.ReportMetric(ms(r.loadAllp99), prefix+"loadall-p99-ms")
	b.ReportMetric(r.bytesPerSec, prefix+"B/s/node")
	b.ReportMetric(float64(r.falseDeaths), prefix+"false-deaths")
	b.ReportMetric(float64(r.falseDeathsSteady), prefix+"false-deaths-steady")
}

func ratio(a, b any) float64 {
	f := func(v any) float64 {
		switch x := v.(type) {
		case time.Duration:
			return float64(x)
		case float64:
			return x
		}
		return math.NaN()
	}
	if f(b) == 0 {
		return math.NaN()
	}
	return f(a) / f(b)
}

type scenarioResult struct {
	join, crash                                  time.Duration
	loadAfterJoin                                time.Duration // the first update, to all nodes
	load99p50, load99p99, loadAllp50, loadAllp99 time.Duration
	bytesPerSec                                  float64
	falseDeaths                                  int
	falseDeathsSteady                            int // after convergence
	updatesMeasured                              int
}

// recorder collects every node's events with their arrival times.
type recorder struct {
	mu     sync.Mutex
	seen   map[string]map[string][]seqAt // observer -> origin -> load seqs in arrival order
	fails  map[string]map[string]time.Time
	cancel []func()
	wg     sync.WaitGroup
}

type seqAt struct {
	seq uint64
	at  time.Time
}

func newRecorder() *recorder {
	return &recorder{seen: map[string]map[string][]seqAt{}, fails: map[string]map[string]time.Time{}}
}

func (r *recorder) watch(g *Gossip) {
	ch, cancel := g.Subscribe()
	name := g.cfg.Name
	r.mu.Lock()
	r.cancel = append(r.cancel, cancel)
	r.seen[name] = map[string][]seqAt{}
	r.fails[name] = map[string]time.Time{}
	r.mu.Unlock()
	r.wg.Go(func() {
		for ev := range ch {
			r.mu.Lock()
			switch ev.Type {
			case EventLoad:
				r.seen[name][ev.Member.Name] = append(r.seen[name][ev.Member.Name], seqAt{ev.Seq, ev.At})
			case EventFail:
				if _, dup := r.fails[name][ev.Member.Name]; !dup {
					r.fails[name][ev.Member.Name] = ev.At
				}
			}
			r.mu.Unlock()
		}
	})
}

func (r *recorder) stop() {
	for _, c := range r.cancel {
		c()
	}
	r.wg.Wait()
}

// arrival returns when observer first held origin's seq >= min.
func (r *recorder) arrival(observer, origin string, min uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen[observer][origin] {
		if s.seq >= min {
			return s.at, true
		}
	}
	return time.Time{}, false
}

func runScenario(b *testing.B, n int, kind transportKind, cfg Config) scenarioResult {
	b.Helper()
	quiet := slog.New(slog.DiscardHandler)
	h := newHarness(b, kind, cfg)
	h.logger, h.epLogger = quiet, quiet
	defer h.closeAll()
	rec := newRecorder()
	defer rec.stop()

	nodes := make([]*Gossip, n)
	for i := range nodes {
		nodes[i] = h.start(fmt.Sprintf("b%03d", i), func(c *Config) { c.Signer = newSigner(b, true); h.keys.add(c.Name, c.Signer.Public()) })
		rec.watch(nodes[i])
		if err := nodes[i].SetLocalLoad(NodeLoad{Status: StatusReady}, agentsFor(nodes[i].cfg.Name, 4, 0)); err != nil {
			b.Fatal(err)
		}
	}
	var res scenarioResult

	// Join in waves of joinWave nodes at once, each through three random
	// nodes that already joined: a cluster (re)start without one seed taking
	// every push/pull. Convergence is timed from the first Join.
	start := time.Now()
	for lo := 1; lo < n; lo += joinWave {
		var wg sync.WaitGroup
		for i := lo; i < min(lo+joinWave, n); i++ {
			seeds := []string{nodes[0].Addr(), nodes[rand.IntN(lo)].Addr(), nodes[rand.IntN(lo)].Addr()}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if _, err := nodes[i].Join(ctx, seeds); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// In a join storm a node can miss another's alive message, and
	// memberlist's push/pull, which would repair that, runs every 60 s at
	// 50 nodes. A node repairs it sooner from its registry: every 5 s it
	// joins through registered nodes its view lacks (node.reconnectDead).
	// Do the same here, with the node list standing in for the registry.
	stopHealing := healFromRegistry(nodes, 5*time.Second)
	joinDeadline := time.Now().Add(50 * time.Second)
	pollUntil(b, 60*time.Second, "convergence", func() bool {
		for _, g := range nodes {
			if g.NumAlive() != n {
				if time.Now().After(joinDeadline) {
					b.Logf("%s sees %d alive; %s; %+v", g.cfg.Name, g.NumAlive(), notAlive(g, nodes), g.Stats())
				}
				return false
			}
		}
		return true
	})
	res.join = time.Since(start)
	stopHealing()
	converged := time.Now()

	// Load updates from random nodes, one at a time. The first goes out
	// right after the join storm, while every node's queue still holds the
	// membership broadcasts, which memberlist sends first; it is reported on
	// its own (load-after-join). The rest are measured after settle.
	before := sumBytes(nodes)
	window := time.Now()
	var t99, tAll []time.Duration
	for u := range loadUpdates + 1 {
		if u == 1 {
			time.Sleep(settle)
			before, window = sumBytes(nodes), time.Now()
		}
		origin := nodes[(u*7+3)%n]
		origin.pub.mu.Lock()
		prev := origin.pub.seq
		origin.pub.mu.Unlock()
		agents := agentsFor(origin.cfg.Name, 4, 0)
		agents[u%4].InFlight = uint32(u + 1)
		agents[u%4].Status = StatusDraining // always significant
		t0 := time.Now()
		if err := origin.SetLocalLoad(NodeLoad{Status: StatusReady}, agents); err != nil {
			b.Fatal(err)
		}
		// Wait until every other node has it; an update still missing after
		// updateWait counts as updateWait (censored), so a lost update shows
		// in p99 without stalling the benchmark until the next refresh.
		var lat []time.Duration
		deadline := t0.Add(updateWait)
		pollUntil(b, updateWait+time.Second, "load update everywhere", func() bool {
			lat = lat[:0]
			done := true
			for _, g := range nodes {
				if g == origin {
					continue
				}
				at, ok := rec.arrival(g.cfg.Name, origin.cfg.Name, prev+1)
				if !ok {
					done = false
					at = deadline
				}
				lat = append(lat, at.Sub(t0))
			}
			return done || time.Now().After(deadline)
		})
		slices.Sort(lat)
		if u == 0 {
			res.loadAfterJoin = lat[len(lat)-1]
		} else {
			// 99% of the N nodes, the origin (which has it at once)
			// included: at N=100, the 98th of the 99 others.
			t99 = append(t99, lat[int(math.Ceil(0.99*float64(n)))-2])
			tAll = append(tAll, lat[len(lat)-1])
		}
		// Restore, so the next update on this node is a change again.
		agents[u%4].Status = StatusReady
		origin.SetLocalLoad(NodeLoad{Status: StatusReady}, agents)
		time.Sleep(150 * time.Millisecond) // spacing between updates (load shape, not synchronisation)
	}
	res.bytesPerSec = float64(sumBytes(nodes)-before) / time.Since(window).Seconds() / float64(n)
	res.load99p50, res.load99p99 = pct(t99, 0.5), pct(t99, 0.99)
	res.loadAllp50, res.loadAllp99 = pct(tAll, 0.5), pct(tAll, 0.99)
	res.updatesMeasured = len(t99)

	// Crash the last node.
	victim := nodes[n-1]
	name := victim.cfg.Name
	crashAt := time.Now()
	h.kill(name)
	crashDeadline := time.Now().Add(50 * time.Second)
	pollUntil(b, 60*time.Second, "crash detection", func() bool {
		for _, g := range nodes[:n-1] {
			if g.NodeAlive(name) {
				if time.Now().After(crashDeadline) {
					m, _ := g.Member(name)
					b.Logf("%s still sees %s as %v (alive %d)", g.cfg.Name, name, m.Status, g.NumAlive())
				}
				return false
			}
		}
		return true
	})
	rec.mu.Lock()
	var last time.Time
	for _, g := range nodes[:n-1] {
		if at, ok := rec.fails[g.cfg.Name][name]; ok && at.After(last) {
			last = at
		}
	}
	for _, f := range rec.fails {
		for failed, at := range f {
			if failed != name {
				res.falseDeaths++
				if at.After(converged) {
					res.falseDeathsSteady++
				}
			}
		}
	}
	rec.mu.Unlock()
	res.crash = last.Sub(crashAt)
	return res
}

func sumBytes(nodes []*Gossip) uint64 {
	var t uint64
	for _, g := range nodes {
		s := g.Stats()
		t += s.PacketBytesSent + s.StreamBytesSent
	}
	return t
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(math.Ceil(p*float64(len(s))))-1]
}

func pollUntil(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// notAlive names the nodes g does not see alive, with what it sees instead,
// for a convergence failure's log.
func notAlive(g *Gossip, nodes []*Gossip) string {
	var out []string
	for _, o := range nodes {
		if m, ok := g.Member(o.cfg.Name); !ok {
			out = append(out, o.cfg.Name+" unknown")
		} else if m.Status != MemberAlive && m.Status != MemberSuspect {
			out = append(out, fmt.Sprintf("%s %v for %v", m.Name, m.Status, time.Since(m.Since).Round(time.Millisecond)))
		}
	}
	return "not alive: " + strings.Join(out, ", ")
}

// healFromRegistry calls ReconnectTo on every node, each interval, with the
// addresses of the nodes its view does not hold, until stopped.
func healFromRegistry(nodes []*Gossip, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			for _, g := range nodes {
				var lost []string
				for _, o := range nodes {
					if _, ok := g.Member(o.cfg.Name); !ok && o != g {
						lost = append(lost, o.Addr())
					}
				}
				g.ReconnectTo(lost)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
