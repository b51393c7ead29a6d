package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// agentProc is one testagent process: an agent serving a capability, or a
// load generator calling one. Agents talk to their node over its Unix
// socket only, so they run in the test's own namespace.
type agentProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

func startTestagent(t *testing.T, name string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{t: t, name: name, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(testagentBinary(t), args...)
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	a.cmd.Env = cleanEnv()
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start testagent %s: %v", name, err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("last output of testagent %s:\n%s", name, tail(a.stderr.String(), 20))
		}
	})
	return a
}

// serveAgent attaches an echo agent named name to node m and waits until
// the node has confirmed its Serve stream.
func (m *mnode) serveAgent(name, capability string, extra ...string) *agentProc {
	t := m.c.t
	t.Helper()
	args := append([]string{"serve", "--socket", m.socket(), "--name", name, "--capability", capability}, extra...)
	a := startTestagent(t, m.name+"/"+name, args...)
	waitUntil(t, 90*time.Second, "agent "+a.name+" up", func() bool {
		select {
		case <-a.done:
			t.Fatalf("testagent %s exited: %v\n%s", a.name, a.err, a.stderr.String())
		default:
		}
		return strings.Contains(a.stderr.String(), a.name+" up")
	})
	return a
}

// stop ends an agent or a load run with SIGTERM.
func (a *agentProc) stop() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		a.t.Fatalf("testagent %s did not stop on SIGTERM", a.name)
	}
}

// loadCounts is what `testagent load` prints.
type loadCounts struct {
	OK      int64            `json:"ok"`
	Errors  int64            `json:"errors"`
	ByAgent map[string]int64 `json:"by_agent"`
	Samples []string         `json:"error_samples"`
	Seconds float64          `json:"seconds"`
	FirstMs int64            `json:"first_error_ms"`
	LastMs  int64            `json:"last_error_ms"`
	Final   bool             `json:"final"`
}

// errorsUntil is how long after t0 calls kept failing (0: none failed after t0).
func (l loadCounts) errorsUntil(t0 time.Time) time.Duration {
	if l.LastMs == 0 || l.LastMs < t0.UnixMilli() {
		return 0
	}
	return time.UnixMilli(l.LastMs).Sub(t0)
}

func (l loadCounts) total() int64 { return l.OK + l.Errors }

// errorRate is errors per call, 0 with no calls.
func (l loadCounts) errorRate() float64 {
	if l.total() == 0 {
		return 0
	}
	return float64(l.Errors) / float64(l.total())
}

func (l loadCounts) String() string {
	return fmt.Sprintf("%d calls, %d errors (%.2f%%), by agent %v", l.total(), l.Errors, 100*l.errorRate(), l.ByAgent)
}

// startLoad calls capability through node m from concurrency callers for at
// most d; stop it early with finish.
func (m *mnode) startLoad(capability string, d time.Duration, concurrency int) *agentProc {
	m.c.t.Helper()
	return startTestagent(m.c.t, "load@"+m.name, "load", "--socket", m.socket(), "--capability", capability,
		"--duration", d.String(), "--concurrency", strconv.Itoa(concurrency), "--timeout", "10s")
}

// finish stops a load run (if it still runs) and returns its counts.
func (a *agentProc) finish() loadCounts {
	a.t.Helper()
	select {
	case <-a.done:
	default:
		a.stop()
	}
	c, ok := a.lastCounts()
	if !ok || !c.Final {
		a.t.Fatalf("load %s printed no final counts: %s\n%s", a.name, tail(a.stdout.String(), 3), a.stderr.String())
	}
	return c
}

// lastCounts decodes the last line load printed: progress while it runs,
// the final counts after.
func (a *agentProc) lastCounts() (loadCounts, bool) {
	lines := strings.Split(strings.TrimSpace(a.stdout.String()), "\n")
	var c loadCounts
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &c); err != nil {
		return c, false
	}
	return c, true
}

// progress returns the counts of a running load so far.
func (a *agentProc) progress() loadCounts {
	c, _ := a.lastCounts()
	return c
}

// waitCalls waits until a load run has made n successful calls.
func waitCalls(t *testing.T, load *agentProc, n int64) {
	t.Helper()
	waitUntil(t, 120*time.Second, fmt.Sprintf("%d successful calls by %s", n, load.name), func() bool {
		select {
		case <-load.done:
			t.Fatalf("load %s ended early: %v\n%s", load.name, load.err, load.stderr.String())
		default:
		}
		return load.progress().OK >= n
	}, func() string { return load.progress().String() })
}

// servedBy is how many calls of a running load agent id has answered.
func servedBy(load *agentProc, id string) int64 { return load.progress().ByAgent[id] }

// waitDiscoverReady waits until node m's Discover lists want ready agents
// for capability, so calls through m can reach all of them.
func waitDiscoverReady(t *testing.T, m *mnode, capability string, want int) {
	t.Helper()
	var last string
	waitUntil(t, 90*time.Second, fmt.Sprintf("%d ready agents for %s on %s", want, capability, m.name), func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		resp, err := meshnodev1.NewRegistryServiceClient(m.grpcConn()).Discover(ctx, &meshnodev1.DiscoverRequest{Capability: capability})
		if err != nil {
			last = err.Error()
			return false
		}
		ready := 0
		var seen []string
		for _, a := range resp.GetAgents() {
			seen = append(seen, a.GetAgent().GetId()+"="+a.GetLoad().GetStatus())
			if a.GetLoad().GetStatus() == "ready" {
				ready++
			}
		}
		last = strings.Join(seen, " ")
		return ready >= want
	}, func() string { return last })
}
