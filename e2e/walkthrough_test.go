package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWalkthrough is the README's walkthrough with real processes: three
// nodes on one machine, joined with tokens; the stdlib-only Python agent on
// node 3; a call from node 1 answered on node 3, all driven by the CLI.
func TestWalkthrough(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed (scripts/install-deps.sh installs it)")
	}
	root := shortTempDir(t)
	sock := func(n string) string { return filepath.Join(root, n, "meshnode.sock") }
	addr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

	p1 := freeUDPPort(t)
	n1 := startNode(t, filepath.Join(root, "n1"), "--name", "n1", "--bind", addr(p1))
	n1.waitReady(t, 30*time.Second)
	tokens := map[string]string{}
	for _, n := range []string{"n2", "n3"} {
		out, errOut, code := runCLI(t, nil, "token", "create", "--server", "--name", n, "--socket", sock("n1"))
		if code != 0 {
			t.Fatalf("token create: %s", errOut)
		}
		tokens[n] = strings.TrimSpace(out)
	}
	for _, n := range []string{"n2", "n3"} {
		p := startNode(t, filepath.Join(root, n), "--name", n, "--server", "--join", addr(p1), "--token", tokens[n])
		p.waitReady(t, 60*time.Second)
	}
	wtWait(t, 60*time.Second, "n1 lists 3 alive members with 3 Raft servers", func() bool {
		out, _, code := runCLI(t, nil, "members", "--json", "--socket", sock("n1"))
		if code != 0 {
			return false
		}
		var m struct {
			Members []struct{ Name, Status, RaftRole string }
		}
		if json.Unmarshal([]byte(out), &m) != nil || len(m.Members) != 3 {
			return false
		}
		for _, x := range m.Members {
			if x.Status != "alive" || (x.RaftRole != "leader" && x.RaftRole != "voter") {
				return false
			}
		}
		return true
	})

	_, file, _, _ := runtime.Caller(0)
	agentPy := filepath.Join(filepath.Dir(file), "..", "examples", "python-agent", "agent.py")
	py := exec.Command(python, agentPy, "--socket", sock("n3"), "--name", "py", "--capability", "demo.upper")
	py.Env = cleanEnv()
	pyOut := &syncBuffer{}
	py.Stdout, py.Stderr = pyOut, pyOut
	if err := py.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		py.Process.Kill()
		py.Wait()
		if t.Failed() {
			t.Logf("python agent output:\n%s", pyOut.String())
		}
	})
	wtWait(t, 30*time.Second, "n1 discovers the Python agent on n3 ready", func() bool {
		out, _, code := runCLI(t, nil, "discover", "demo.upper", "--json", "--socket", sock("n1"))
		return code == 0 && strings.Contains(out, `"n3/py"`) && strings.Contains(out, `"ready"`)
	})

	out, errOut, code := runCLI(t, nil, "call", "demo.upper", "--data", `"hello mesh"`, "--json", "--socket", sock("n1"))
	if code != 0 {
		t.Fatalf("call: exit %d: %s", code, errOut)
	}
	var resp struct {
		Payload []byte
		AgentID string `json:"agentId"`
		Node    string
		TraceID string `json:"traceId"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("call --json output %q: %v", out, err)
	}
	if resp.Node != "n3" || resp.AgentID != "n3/py" || !strings.Contains(string(resp.Payload), "HELLO MESH") || resp.TraceID == "" {
		t.Fatalf("call answered by %s on %s with %q (trace %q); want n3/py on n3 with HELLO MESH and a trace id", resp.AgentID, resp.Node, resp.Payload, resp.TraceID)
	}
	// The Python agent's own client mode, through node 2.
	callPy := exec.Command(python, agentPy, "--socket", sock("n2"), "--call", "demo.upper", "--data", `"from python"`)
	callPy.Env = cleanEnv()
	pyCall, err := callPy.CombinedOutput()
	if err != nil || !strings.Contains(string(pyCall), "FROM PYTHON") {
		t.Fatalf("python --call via n2: %v: %s", err, pyCall)
	}
	// Unknown capability: a clear error and a usage exit code.
	_, errOut, code = runCLI(t, nil, "call", "no.such.capability", "--socket", sock("n1"))
	if code != 2 || !strings.Contains(errOut, "no.such.capability") {
		t.Fatalf("call of an unknown capability: exit %d: %s", code, errOut)
	}
	t.Logf("walkthrough: 3 nodes, python agent on n3, call from n1 answered by %s on %s", resp.AgentID, resp.Node)
}

// wtWait polls cond until it holds or the time is up.
func wtWait(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
