package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// cluster is N meshnode processes on a testNet. Node 0 bootstraps the
// cluster; nodes 0..servers-1 are Raft servers, the rest clients.
type cluster struct {
	t       *testing.T
	net     *testNet
	root    string
	nodes   []*mnode
	servers int
	extra   []string // flags every node runs with
}

// mnode is one node of a cluster, running or not.
type mnode struct {
	c      *cluster
	i      int
	name   string
	dir    string
	addr   string
	server bool
	token  string
	seeds  []string
	// mu guards p and conn, which scenario workers read while the test
	// restarts the node.
	mu   sync.Mutex
	p    *proc
	conn *grpc.ClientConn
	// up is whether the test means m to be running: a process that exited
	// while up is a crash the test reports.
	up bool
}

// newCluster lays out n nodes (nothing runs yet).
func newCluster(t *testing.T, n, servers int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, net: newTestNet(t, n), root: shortTempDir(t), servers: servers, extra: extra}
	for i := range n {
		m := &mnode{c: c, i: i, name: fmt.Sprintf("n%d", i+1), server: i < servers}
		m.dir = filepath.Join(c.root, m.name)
		m.addr = c.net.bindAddr(i)
		c.nodes = append(c.nodes, m)
	}
	t.Logf("cluster of %d nodes (%d servers) on %s", n, servers, c.describeNet())
	return c
}

func (c *cluster) describeNet() string {
	if c.net.netns {
		return fmt.Sprintf("network namespaces %s-*, subnet 10.213.%d.0/24", c.net.name, c.net.subnet)
	}
	return "loopback"
}

// socket is node m's agent API socket.
func (m *mnode) socket() string { return filepath.Join(m.dir, "meshnode.sock") }

// start runs node m. The first start of a joining node uses its token; later
// starts reuse the certificate in its data dir.
func (m *mnode) start() {
	c := m.c
	c.t.Helper()
	args := []string{"run", "--name", m.name, "--data-dir", m.dir, "--bind", m.addr, "--shutdown-timeout", "10s"}
	if m.server {
		args = append(args, "--server")
	}
	if len(m.seeds) > 0 {
		args = append(args, "--join", strings.Join(m.seeds, ","))
	}
	if m.token != "" {
		args = append(args, "--token", m.token)
		m.token = "" // one-time: a restart must not need it
	}
	args = append(args, c.extra...)
	p := &proc{output: &syncBuffer{}, done: make(chan struct{}), dir: m.dir, socket: m.socket()}
	p.cmd = c.net.command(m.i, binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	p.cmd.Env = cleanEnv()
	// If the test binary dies (timeout, ^C), so do its nodes.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", m.name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	m.mu.Lock()
	m.p, m.up = p, true
	m.mu.Unlock()
	c.t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		<-p.done
		if c.t.Failed() {
			c.t.Logf("last output of %s (%v):\n%s", m.name, args[:8], tail(p.output.String(), 60))
		}
	})
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// running reports whether m's process is alive.
func (m *mnode) running() bool {
	m.mu.Lock()
	p := m.p
	m.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to go.
func (m *mnode) kill() {
	m.c.t.Helper()
	m.up = false
	m.p.cmd.Process.Signal(syscall.SIGCONT)
	m.p.stop(m.c.t, syscall.SIGKILL, 30*time.Second)
}

// pause and resume freeze and thaw the process (SIGSTOP/SIGCONT).
func (m *mnode) pause()  { m.p.cmd.Process.Signal(syscall.SIGSTOP) }
func (m *mnode) resume() { m.p.cmd.Process.Signal(syscall.SIGCONT) }

// restart stops m (SIGTERM when graceful, else SIGKILL) and starts it again.
func (m *mnode) restart(graceful bool) {
	m.c.t.Helper()
	if graceful {
		m.up = false
		if code := m.p.stop(m.c.t, syscall.SIGTERM, 30*time.Second); code != 0 {
			m.c.t.Errorf("%s exited %d after SIGTERM\n%s", m.name, code, tail(m.p.output.String(), 30))
		}
	} else {
		m.kill()
	}
	m.start()
}

// waitReady waits until m's socket answers Status, failing the test if the
// process exits first.
func (m *mnode) waitReady(within time.Duration) {
	c := m.c
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if st, err := statusOnce(m.socket()); err == nil && st != nil {
			return
		}
		if !m.running() {
			c.t.Fatalf("%s exited before it was ready (%v):\n%s", m.name, m.p.err, tail(m.p.output.String(), 40))
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s not ready after %v:\n%s", m.name, within, tail(m.p.output.String(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// grpcConn is a lazily made connection to m's socket, reused across
// restarts (gRPC reconnects on its own).
func (m *mnode) grpcConn() *grpc.ClientConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn == nil {
		conn, err := grpc.NewClient("unix://"+m.socket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			m.c.t.Fatal(err)
		}
		m.conn = conn
		m.c.t.Cleanup(func() { conn.Close() })
	}
	return m.conn
}

// cli runs a client command against m's socket.
func (m *mnode) cli(args ...string) (stdout, stderr string, code int) {
	m.c.t.Helper()
	return runCLI(m.c.t, nil, append(args, "--socket", m.socket())...)
}

// createToken asks node 0 for a join token for m.
func (c *cluster) createToken(m *mnode) string {
	c.t.Helper()
	args := []string{"token", "create", "--name", m.name, "--ttl", "30m"}
	if m.server {
		args = append(args, "--server")
	}
	var out, errOut string
	var code int
	waitUntil(c.t, 60*time.Second, "a join token for "+m.name, func() bool {
		out, errOut, code = c.nodes[0].cli(args...)
		return code == 0
	})
	_ = errOut
	return strings.TrimSpace(out)
}

// bootstrap starts node 0 and waits for it.
func (c *cluster) bootstrap() {
	c.t.Helper()
	c.nodes[0].start()
	c.nodes[0].waitReady(90 * time.Second)
}

// startAll bootstraps node 0, then starts every other node with the rest of
// the cluster as seeds, and waits until every node sees every other alive.
func (c *cluster) startAll() time.Duration {
	c.t.Helper()
	begin := time.Now()
	c.bootstrap()
	for _, m := range c.nodes[1:] {
		m.token = c.createToken(m)
		m.seeds = []string{c.nodes[0].addr}
	}
	for _, m := range c.nodes[1:] {
		m.start()
	}
	for _, m := range c.nodes[1:] {
		m.waitReady(120 * time.Second)
	}
	c.waitConverged(180 * time.Second)
	// Restarts use every other node as a seed, so no single node is needed.
	for _, m := range c.nodes {
		m.seeds = c.seedsFor(m)
	}
	return time.Since(begin)
}

// seedsFor lists every node's address but m's.
func (c *cluster) seedsFor(m *mnode) []string {
	var out []string
	for _, o := range c.nodes {
		if o != m {
			out = append(out, o.addr)
		}
	}
	return out
}

// memberView is what one node reports about the cluster.
type memberView struct {
	alive  map[string]bool
	leader string
	voters int
}

func (m *mnode) members(ctx context.Context) (*memberView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := meshnodev1.NewNodeServiceClient(m.grpcConn()).Members(ctx, &meshnodev1.MembersRequest{})
	if err != nil {
		return nil, err
	}
	v := &memberView{alive: map[string]bool{}}
	for _, mem := range resp.GetMembers() {
		if mem.GetStatus() == "alive" {
			v.alive[mem.GetName()] = true
		}
		switch mem.GetRaftRole() {
		case "leader":
			v.leader = mem.GetName()
			v.voters++
		case "voter", "follower":
			v.voters++
		}
	}
	return v, nil
}

// checkCrashed fails the test if a node the test meant to be up exited.
func (c *cluster) checkCrashed() {
	c.t.Helper()
	for _, m := range c.nodes {
		if m.up && !m.running() {
			c.t.Fatalf("node %s exited unexpectedly (%v):\n%s", m.name, m.p.err, tail(m.p.output.String(), 40))
		}
	}
}

// waitConverged waits until every running node sees every running node
// alive and a Raft leader, and the servers see the voters the cluster
// should have.
func (c *cluster) waitConverged(within time.Duration) {
	c.t.Helper()
	var last string
	wantVoters := min(3, c.servers)
	waitUntil(c.t, within, "every running node sees the others alive and a leader", func() bool {
		c.checkCrashed()
		for _, m := range c.nodes {
			if !m.running() {
				continue
			}
			v, err := m.members(context.Background())
			if err != nil {
				last = fmt.Sprintf("%s: %v", m.name, err)
				return false
			}
			for _, o := range c.nodes {
				if o.running() && !v.alive[o.name] {
					last = fmt.Sprintf("%s does not see %s alive (alive: %v)", m.name, o.name, v.alive)
					return false
				}
			}
			// Clients are not Raft members and do not report Raft roles.
			if m.server && v.leader == "" {
				last = m.name + " sees no Raft leader"
				return false
			}
			if m.server && v.voters < wantVoters {
				last = fmt.Sprintf("%s sees %d Raft voters, want %d", m.name, v.voters, wantVoters)
				return false
			}
		}
		return true
	}, func() string { return last })
}

// leader finds the Raft leader with `meshnode members --json`, asking the
// running nodes in turn; "" when none knows one.
func (c *cluster) leader() *mnode {
	c.t.Helper()
	for _, m := range c.nodes {
		if !m.running() {
			continue
		}
		out, _, code := m.cli("members", "--json", "--timeout", "5s")
		if code != 0 {
			continue
		}
		var resp struct {
			Members []struct {
				Name     string `json:"name"`
				RaftRole string `json:"raftRole"`
			} `json:"members"`
		}
		if json.Unmarshal([]byte(out), &resp) != nil {
			continue
		}
		for _, mem := range resp.Members {
			if mem.RaftRole == "leader" {
				if l := c.byName(mem.Name); l != nil && l.running() {
					return l
				}
			}
		}
	}
	return nil
}

// waitLeader waits for a running leader other than not (nil: any).
func (c *cluster) waitLeader(within time.Duration, not *mnode) *mnode {
	c.t.Helper()
	var l *mnode
	waitUntil(c.t, within, "a Raft leader", func() bool {
		l = c.leader()
		return l != nil && l != not
	})
	return l
}

func (c *cluster) byName(name string) *mnode {
	for _, m := range c.nodes {
		if m.name == name {
			return m
		}
	}
	return nil
}

// waitUntil polls cond every 100 ms until it holds, failing the test after
// within; why, if given, explains the last failed check.
func waitUntil(t testing.TB, within time.Duration, what string, cond func() bool, why ...func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if len(why) > 0 {
				msg = ": " + why[0]()
			}
			t.Fatalf("timed out after %v waiting for %s%s", within, what, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fullOnly skips slow scenarios unless MESHNODE_E2E_FULL=1 (make e2e).
func fullOnly(t *testing.T) {
	t.Helper()
	if !fullMode() {
		t.Skip("slow scenario: runs with MESHNODE_E2E_FULL=1 (make e2e)")
	}
}

// fullMode reports whether every scenario runs at full size.
func fullMode() bool { return os.Getenv("MESHNODE_E2E_FULL") != "" }

// summary prints a scenario's one summary line to the test log and to
// standard output, so it shows in CI output without -v.
func summary(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf("SUMMARY %s: ", t.Name()) + fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Println(line)
}

var (
	agentBinOnce sync.Once
	agentBin     string
	agentBinErr  error
)

// testagentBinary builds e2e/testagent once, next to the meshnode binary.
func testagentBinary(t testing.TB) string {
	t.Helper()
	agentBinOnce.Do(func() {
		agentBin = filepath.Join(filepath.Dir(binary), "testagent")
		out, err := exec.Command("go", "build", "-o", agentBin, "github.com/agentmesh/meshnode/e2e/testagent").CombinedOutput()
		if err != nil {
			agentBinErr = fmt.Errorf("build testagent: %v\n%s", err, out)
		}
	})
	if agentBinErr != nil {
		t.Fatal(agentBinErr)
	}
	return agentBin
}

// progress keeps what a scenario has seen so far, so a failed scenario
// still prints a SUMMARY line saying how far it got.
type progress struct {
	t    *testing.T
	mu   sync.Mutex
	line string
}

func newProgress(t *testing.T) *progress {
	p := &progress{t: t}
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			defer p.mu.Unlock()
			line := fmt.Sprintf("SUMMARY %s: FAILED; so far: %s", t.Name(), p.line)
			t.Log(line)
			fmt.Println(line)
		}
	})
	return p
}

// set records the scenario's counts so far.
func (p *progress) set(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line = fmt.Sprintf(format, args...)
}
