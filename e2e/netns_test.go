package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The network the nodes of one test run on. As root with iproute2, every node
// gets its own network namespace with one veth link onto a bridge that lives
// in a hub namespace of the test's own: the root namespace gets no address,
// route or link, and the run's addresses (10.213.X.0/24) exist only inside
// namespaces the test created. Without root the nodes share the loopback
// interface on distinct 127.0.0.x addresses, and partitions are unavailable.

// nsPrefix starts the name of every namespace the e2e tests create; the
// creating test binary's pid follows, so a sweep can tell stale namespaces
// (their creator is gone) from those of a concurrent run.
const nsPrefix = "mne2e-"

// netSeq numbers the networks of one test binary, for unique names and
// subnets.
var netSeq atomic.Int32

var sweepOnce sync.Once

// testNet places nodes on a network and cuts and heals it.
type testNet struct {
	t      testing.TB
	netns  bool
	name   string   // namespace name stem: nsPrefix<pid>-<seq>
	subnet int      // X in 10.213.X.0/24
	n      int      // nodes
	ips    []string // per node
}

// netnsAvailable reports whether this process can build namespaces, and why
// not when it cannot.
func netnsAvailable() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not running as root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false, "the ip command (iproute2) is not installed"
	}
	return true, ""
}

// newTestNet prepares addresses for n nodes: namespaces when possible,
// loopback otherwise. Everything it creates is removed at test cleanup.
func newTestNet(t testing.TB, n int) *testNet {
	t.Helper()
	seq := int(netSeq.Add(1))
	tn := &testNet{t: t, n: n, subnet: 1 + (os.Getpid()+seq)%250}
	tn.name = fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), seq)
	if ok, _ := netnsAvailable(); ok && os.Getenv("MESHNODE_E2E_LOOPBACK") == "" {
		tn.netns = true
		sweepOnce.Do(func() { sweepStaleNamespaces(t) })
		t.Cleanup(tn.destroy)
		if err := tn.build(); err != nil {
			t.Fatalf("build network namespaces: %v", err)
		}
		return tn
	}
	// Loopback: 127.0.0.x, a different x per node and per network so that
	// concurrent tests do not meet.
	for i := range n {
		tn.ips = append(tn.ips, fmt.Sprintf("127.0.%d.%d", tn.subnet, 10+i))
	}
	return tn
}

func (tn *testNet) hub() string         { return tn.name + "-hub" }
func (tn *testNet) nodeNS(i int) string { return fmt.Sprintf("%s-n%d", tn.name, i) }

// build creates the hub namespace with two bridges (br0 joins everyone;
// br1 holds the other side of a split) and one namespace per node.
func (tn *testNet) build() error {
	hub := tn.hub()
	steps := [][]string{
		{"netns", "add", hub},
		{"-n", hub, "link", "set", "lo", "up"},
		{"-n", hub, "link", "add", "br0", "type", "bridge"},
		{"-n", hub, "link", "add", "br1", "type", "bridge"},
		{"-n", hub, "link", "set", "br0", "up"},
		{"-n", hub, "link", "set", "br1", "up"},
	}
	for i := range tn.n {
		ns, port := tn.nodeNS(i), fmt.Sprintf("v%d", i)
		ip := fmt.Sprintf("10.213.%d.%d", tn.subnet, 10+i)
		tn.ips = append(tn.ips, ip)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", hub, "link", "set", port, "master", "br0"},
			[]string{"-n", hub, "link", "set", port, "up"},
			[]string{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	return nil
}

// destroy kills whatever still runs in the namespaces and deletes them; the
// veth pairs and bridges go with them.
func (tn *testNet) destroy() {
	names := []string{tn.hub()}
	for i := range tn.n {
		names = append(names, tn.nodeNS(i))
	}
	for _, ns := range names {
		deleteNamespace(ns)
	}
}

func deleteNamespace(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	exec.Command("ip", "netns", "del", ns).Run()
}

// sweepStaleNamespaces removes namespaces an earlier, killed run of these
// tests left behind: those with our prefix whose creating process is gone.
func sweepStaleNamespaces(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], nsPrefix) {
			continue
		}
		ns := fields[0]
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(ns, nsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pidStr); err == nil {
			continue // a concurrent run owns it
		}
		t.Logf("removing stale namespace %s of a dead test run (pid %d)", ns, pid)
		deleteNamespace(ns)
	}
}

func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// command returns the command that runs bin with args as node i: inside its
// namespace when there is one.
func (tn *testNet) command(i int, bin string, args ...string) *exec.Cmd {
	if !tn.netns {
		return exec.Command(bin, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", tn.nodeNS(i), bin}, args...)...)
}

// bindAddr returns the UDP address node i binds.
func (tn *testNet) bindAddr(i int) string {
	if tn.netns {
		return net.JoinHostPort(tn.ips[i], "7946")
	}
	return net.JoinHostPort(tn.ips[i], strconv.Itoa(freeUDPPortOn(tn.t, tn.ips[i])))
}

// freeUDPPortOn finds a UDP port that was free a moment ago on ip.
func freeUDPPortOn(t testing.TB, ip string) int {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// requirePartitions skips the test when the network cannot be cut.
func (tn *testNet) requirePartitions(t testing.TB) {
	t.Helper()
	if !tn.netns {
		_, why := netnsAvailable()
		if why == "" {
			why = "MESHNODE_E2E_LOOPBACK is set"
		}
		t.Skipf("partition scenario skipped: network namespaces are unavailable (%s); it runs as root with iproute2", why)
	}
}

// isolate cuts node i off from every other node by taking its link down
// inside its namespace.
func (tn *testNet) isolate(i int) {
	tn.t.Helper()
	if err := ipCmd("-n", tn.nodeNS(i), "link", "set", "eth0", "down"); err != nil {
		tn.t.Fatal(err)
	}
}

// split moves the nodes in side onto a bridge of their own: they reach each
// other but none of the rest, and the rest keep reaching each other.
func (tn *testNet) split(side []int) {
	tn.t.Helper()
	for _, i := range side {
		if err := ipCmd("-n", tn.hub(), "link", "set", fmt.Sprintf("v%d", i), "master", "br1"); err != nil {
			tn.t.Fatal(err)
		}
	}
}

// heal undoes every isolate and split.
func (tn *testNet) heal() {
	tn.t.Helper()
	if !tn.netns {
		return
	}
	for i := range tn.n {
		if err := ipCmd("-n", tn.hub(), "link", "set", fmt.Sprintf("v%d", i), "master", "br0"); err != nil {
			tn.t.Fatal(err)
		}
		if err := ipCmd("-n", tn.nodeNS(i), "link", "set", "eth0", "up"); err != nil {
			tn.t.Fatal(err)
		}
	}
}
