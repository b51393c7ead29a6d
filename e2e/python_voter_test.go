package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pythonVoter returns python3 if it can sign votes, and skips otherwise.
func pythonVoter(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	if out, err := exec.Command(py, "-c", "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey").CombinedOutput(); err != nil {
		t.Skipf("python3 cannot import cryptography's ed25519 (%v: %s): apt-get install python3-cryptography to run the Python voter", err, strings.TrimSpace(string(out)))
	}
	return py
}

// startPythonVoter runs examples/python-agent/agent.py --vote on node m, with
// its vote key and journal in a fresh state directory.
func startPythonVoter(t *testing.T, py string, m *mnode, name, capability string, extra ...string) *agentProc {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "examples", "python-agent", "agent.py"))
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{t: t, name: m.name + "/" + name, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	args := append([]string{script, "--socket", m.socket(), "--name", name, "--capability", capability,
		"--vote", "--state-dir", t.TempDir()}, extra...)
	a.cmd = exec.Command(py, args...)
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	a.cmd.Env = append(cleanEnv(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start agent.py: %v", err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("last output of agent.py %s:\n%s", a.name, tail(a.stderr.String(), 20))
		}
	})
	waitUntil(t, 60*time.Second, "agent.py "+a.name+" ready", func() bool {
		select {
		case <-a.done:
			t.Fatalf("agent.py %s exited: %v\n%s", a.name, a.err, a.stderr.String())
		default:
		}
		return strings.Contains(a.stderr.String(), "ready as "+a.name)
	})
	return a
}

// A Python agent votes in a quorum decision next to Go agents: four nodes,
// Go voters on n1-n3 and agent.py on n4, the default policy (BFT, 3 of 4 on
// distinct hosts). n3's voter is stopped (SIGSTOP: still registered and
// ready, never answering) so the decision cannot be reached without the
// Python vote: an APPROVE that verifies proves the node accepted agent.py's
// key and signature exactly as it accepts the Go SDK's.
func TestPythonVoterInQuorum(t *testing.T) {
	python := pythonVoter(t)
	c := newCluster(t, 4, 1)
	begin := time.Now()
	c.startAll()
	n1, n4 := c.nodes[0], c.nodes[3]
	var goVoters []*agentProc
	for _, m := range c.nodes[:3] {
		goVoters = append(goVoters, m.serveAgent("voter-"+m.name, "e2e.pyvote", "--vote"))
	}
	py := startPythonVoter(t, python, n4, "py-voter", "e2e.pyvote", "--max-amount", "100")
	waitDiscoverReady(t, n1, "e2e.pyvote", 4)
	stopped := goVoters[2]
	stopped.cmd.Process.Signal(syscall.SIGSTOP)
	defer stopped.cmd.Process.Signal(syscall.SIGCONT)

	out, errOut, code := n1.cli("quorum", "propose", "--json", "--id", "e2e-py", "--kind", "e2e.payment",
		"--data", `{"amount": 42}`, "--capability", "e2e.pyvote", "--count", "4", "--deadline", "20s", "--wait", "--timeout", "40s")
	if code != 0 {
		t.Fatalf("quorum propose: exit %d: %s%s", code, out, errOut)
	}
	type vote struct {
		AgentID string `json:"voterAgentId"`
		Choice  string `json:"choice"`
		Reason  string `json:"reason"`
	}
	var d struct {
		Status      string `json:"status"`
		Outcome     string `json:"outcome"`
		Detail      string `json:"detail"`
		Certificate struct {
			Votes []vote `json:"votes"`
		} `json:"certificate"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("quorum propose --json: %v\n%s", err, out)
	}
	if d.Status != "DECISION_STATUS_DECIDED" || d.Outcome != "CHOICE_APPROVE" {
		t.Fatalf("decision = %s / %s (%s), want DECIDED / APPROVE\n%s", d.Status, d.Outcome, d.Detail, out)
	}
	var pyVote *vote
	for i, v := range d.Certificate.Votes {
		if v.AgentID == py.name {
			pyVote = &d.Certificate.Votes[i]
		}
	}
	if pyVote == nil || pyVote.Choice != "CHOICE_APPROVE" || !strings.Contains(pyVote.Reason, "agent.py") {
		t.Fatalf("the certificate's votes %+v do not hold agent.py's approval", d.Certificate.Votes)
	}

	// verify checks every signature against the key history read through
	// the Raft leader, and the default policy; it lists the counted votes.
	vout, verr, vcode := n1.cli("quorum", "verify", "e2e-py")
	if vcode != 0 {
		t.Fatalf("quorum verify e2e-py: exit %d: %s%s", vcode, vout, verr)
	}
	if !strings.Contains(vout, "certificate of e2e-py verifies: approve by 3 signed votes") || !strings.Contains(vout, py.name+" on "+n4.name+": approve") {
		t.Fatalf("quorum verify e2e-py does not show agent.py's vote:\n%s", vout)
	}

	// Over agent.py's --max-amount it rejects, and with n3 silent the two
	// Go approvals are no quorum: its vote is its own, not a fixed approval.
	out, errOut, code = n1.cli("quorum", "propose", "--json", "--id", "e2e-py-big", "--kind", "e2e.payment",
		"--data", `{"amount": 500}`, "--capability", "e2e.pyvote", "--count", "4", "--deadline", "3s", "--wait", "--timeout", "30s")
	if code != 0 {
		t.Fatalf("quorum propose e2e-py-big: exit %d: %s%s", code, out, errOut)
	}
	var big struct {
		Status string `json:"status"`
		Votes  []vote `json:"votes"`
	}
	if err := json.Unmarshal([]byte(out), &big); err != nil {
		t.Fatalf("quorum propose --json: %v\n%s", err, out)
	}
	rejected := false
	for _, v := range big.Votes {
		rejected = rejected || v.AgentID == py.name && v.Choice == "CHOICE_REJECT" && strings.Contains(v.Reason, "exceeds the limit 100")
	}
	if big.Status != "DECISION_STATUS_NO_QUORUM" || !rejected {
		t.Fatalf("a payment over agent.py's limit: status %s, votes %+v; want NO_QUORUM with agent.py's reject", big.Status, big.Votes)
	}
	summary(t, "ops=2 proposals (bft 3-of-4: 2 Go voters + agent.py; n3's voter stopped) + verify; decided %s (%s), then NO_QUORUM on agent.py's reject; errors=0; %v in all",
		d.Outcome, d.Detail, time.Since(begin).Round(time.Millisecond))
}
