package node_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// baselineEnv makes the test binary serve a bare grpc-go NodeService on a
// Unix socket: the baseline is a direct unary call between two processes.
const baselineEnv = "MESHNODE_BENCH_BASELINE_SOCKET"

type staticStatus struct {
	meshnodev1.UnimplementedNodeServiceServer
}

func (staticStatus) Status(context.Context, *meshnodev1.StatusRequest) (*meshnodev1.StatusResponse, error) {
	return &meshnodev1.StatusResponse{Name: strings.Repeat("x", 64)}, nil
}

func runBaselineServer(socket string) int {
	l, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s := grpc.NewServer()
	meshnodev1.RegisterNodeServiceServer(s, staticStatus{})
	go s.Serve(l)
	// Stop when the parent goes away (stdin closes).
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	s.Stop()
	return 0
}

// load runs callers against call for d and returns latencies.
func load(callers int, d time.Duration, call func(ctx context.Context) error) (lat []time.Duration, errs int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(stop) {
				t0 := time.Now()
				if err := call(context.Background()); err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, errs
}

// paced issues calls at rate per second for d (moderate load) and returns
// latencies.
func paced(rate int, d time.Duration, call func(ctx context.Context) error) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.After(d)
	for {
		select {
		case <-end:
			wg.Wait()
			return lat
		case <-tick.C:
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				if call(context.Background()) == nil {
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
			}()
		}
	}
}

func pct(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[int(float64(len(s)-1)*p)].Microseconds())
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func maxRSSMB() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024
}

// BenchmarkCallPath measures a call (a) agent -> node -> agent on one node,
// (b) across two nodes over QUIC, and (c) the baseline: a direct grpc-go
// unary call between two processes over a Unix socket, all in this run.
// Throughput uses 64 callers; latency is also taken at a paced 1,000
// calls/s. CPU is this process's (nodes, agents and callers together), so
// it is an upper bound for the nodes' own cost.
func BenchmarkCallPath(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchCallPath(b)
	}
}

func benchCallPath(b *testing.B) {
	const callers, window = 64, 3 * time.Second
	nodes := startCluster(b)
	payload := make([]byte, 64)
	echo := func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: r.Payload}, nil
	}
	for _, spec := range []struct {
		n   *testNode
		cap string
	}{{nodes[0], "bench.local"}, {nodes[1], "bench.remote"}} {
		a := &agent.Agent{Name: spec.cap, Socket: spec.n.socket, MaxInFlight: 256}
		a.Handle(agent.Capability{Name: spec.cap}, echo)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); a.Serve(ctx) }()
		b.Cleanup(func() { cancel(); <-done; a.Close() })
	}
	waitFor(b, 30*time.Second, "bench agents ready", func() bool {
		return len(readyAgents(nil, nodes[0], "bench.local")) == 1 && len(readyAgents(nil, nodes[0], "bench.remote")) == 1
	})
	conn := nodes[0].conn(b)
	inv := meshnodev1.NewInvokeServiceClient(conn)
	callCap := func(capability string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := inv.Call(ctx, &meshnodev1.CallRequest{Capability: capability, Payload: payload, Deadline: timestamppb.New(time.Now().Add(10 * time.Second))})
			return err
		}
	}

	dir, _ := os.MkdirTemp("", "mnb")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "base.sock")
	srv := exec.Command(os.Args[0], "-test.run=^$")
	srv.Env = append(os.Environ(), baselineEnv+"="+sock)
	stdin, _ := srv.StdinPipe()
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); srv.Wait() }()
	waitFor(b, 10*time.Second, "baseline server up", func() bool { _, err := os.Stat(sock); return err == nil })
	bconn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer bconn.Close()
	base := meshnodev1.NewNodeServiceClient(bconn)
	baseCall := func(ctx context.Context) error { _, err := base.Status(ctx, &meshnodev1.StatusRequest{}); return err }

	// Warm up every path.
	load(8, 300*time.Millisecond, callCap("bench.local"))
	load(8, 300*time.Millisecond, callCap("bench.remote"))
	load(8, 300*time.Millisecond, baseCall)

	type result struct {
		lat     []time.Duration
		errs    int
		cpu     float64
		paced   []time.Duration
		perSec  float64
		cpuPerK float64
	}
	run := func(call func(context.Context) error) result {
		c0 := cpuSeconds()
		lat, errs := load(callers, window, call)
		r := result{lat: lat, errs: errs, cpu: cpuSeconds() - c0}
		r.perSec = float64(len(lat)) / window.Seconds()
		if len(lat) > 0 {
			r.cpuPerK = r.cpu / float64(len(lat)) * 1000
		}
		r.paced = paced(1000, 2*time.Second, call)
		return r
	}
	local, remote, baseline := run(callCap("bench.local")), run(callCap("bench.remote")), run(baseCall)
	b.ReportMetric(local.perSec, "local-calls/s")
	b.ReportMetric(pct(local.lat, 0.5), "local-p50-us")
	b.ReportMetric(pct(local.lat, 0.99), "local-p99-us")
	b.ReportMetric(remote.perSec, "remote-calls/s")
	b.ReportMetric(pct(remote.lat, 0.5), "remote-p50-us")
	b.ReportMetric(pct(remote.lat, 0.99), "remote-p99-us")
	b.ReportMetric(baseline.perSec, "baseline-calls/s")
	b.ReportMetric(pct(baseline.lat, 0.5), "baseline-p50-us")
	b.ReportMetric(pct(baseline.lat, 0.99), "baseline-p99-us")
	b.ReportMetric(remote.perSec/baseline.perSec, "remote/baseline-throughput")
	b.ReportMetric(pct(remote.paced, 0.5)-pct(baseline.paced, 0.5), "remote-added-p50-us@1k/s")
	b.ReportMetric(pct(remote.paced, 0.99)-pct(baseline.paced, 0.99), "remote-added-p99-us@1k/s")
	b.ReportMetric(remote.cpuPerK, "process-cpu-s/1k-remote-calls")
	b.ReportMetric(local.cpuPerK, "process-cpu-s/1k-local-calls")
	b.ReportMetric(maxRSSMB(), "process-maxrss-MB")
	b.ReportMetric(float64(local.errs+remote.errs), "errors")
}
