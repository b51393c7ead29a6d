package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitOutput waits until the process has printed s.
func (p *proc) waitOutput(t *testing.T, s string, within time.Duration) {
	t.Helper()
	wtWait(t, within, "meshnode prints "+strconv.Quote(s), func() bool { return strings.Contains(p.output.String(), s) })
}

// TestJoinTokensAndSignalsDuringJoin: a node joins with --token-file; a
// node joining an unreachable seed, with its token from MESHNODE_TOKEN,
// stops cleanly on SIGTERM while it retries; --token still works and says
// to use --token-file.
func TestJoinTokensAndSignalsDuringJoin(t *testing.T) {
	root := shortTempDir(t)
	sock1 := filepath.Join(root, "n1", "meshnode.sock")
	seed := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	startNode(t, filepath.Join(root, "n1"), "--name", "n1", "--bind", seed)
	token := func(name string) string {
		out, errOut, code := runCLI(t, nil, "token", "create", "--name", name, "--socket", sock1)
		if code != 0 || strings.TrimSpace(out) == "" {
			t.Fatalf("token create (right after start, no wait of the test's own): exit %d: %s", code, errOut)
		}
		return strings.TrimSpace(out)
	}

	tokenFile := filepath.Join(root, "n2.token")
	if err := os.WriteFile(tokenFile, []byte(token("n2")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, filepath.Join(root, "n2"), "--name", "n2", "--join", seed, "--token-file", tokenFile)
	n2.waitReady(t, 30*time.Second)
	if strings.Contains(n2.output.String(), "--token-file") {
		t.Errorf("a node given --token-file should not be told to use it:\n%s", n2.output.String())
	}

	// Nothing listens at unreachable: the joins retry until stopped.
	unreachable := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	n3 := startNodeEnv(t, []string{"MESHNODE_TOKEN=" + token("n3")}, filepath.Join(root, "n3"),
		"--name", "n3", "--bind", "127.0.0.1:"+strconv.Itoa(freeUDPPort(t)), "--join", unreachable, "--shutdown-timeout", "5s")
	n4 := startNode(t, filepath.Join(root, "n4"), "--name", "n4", "--join", unreachable, "--token", token("n4"), "--shutdown-timeout", "5s")
	n3.waitOutput(t, "join attempt failed; will retry", 30*time.Second)
	n4.waitOutput(t, "join attempt failed; will retry", 30*time.Second)
	if code := n3.stop(t, syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("SIGTERM during a join: exit %d, want 0", code)
	}
	if !strings.Contains(n3.output.String(), "stopped during start-up") {
		t.Errorf("the node should say it stopped during start-up:\n%s", n3.output.String())
	}
	if !strings.Contains(n4.output.String(), "--token-file FILE") {
		t.Errorf("--token should log a warning naming --token-file:\n%s", n4.output.String())
	}
	if code := n4.stop(t, syscall.SIGINT, 5*time.Second); code != 0 {
		t.Fatalf("SIGINT during a join: exit %d, want 0", code)
	}
}

// TestCLIOnOneNode: the client commands' semantics against a real node,
// the first of them run while the node is still starting.
func TestCLIOnOneNode(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "n1")
	sock := filepath.Join(dir, "meshnode.sock")
	n1 := startNode(t, dir, "--name", "n1")
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, nil, append(args, "--socket", sock)...)
	}

	// Straight after start: policy set waits for the socket and a leader.
	if out, errOut, code := cli("policy", "set", "demo.x", "--policy", "cost"); code != 0 {
		t.Fatalf("policy set right after start: exit %d: %s%s", code, out, errOut)
	}
	if !strings.Contains(n1.output.String(), "advertise=") {
		t.Errorf("run should log the address it advertises:\n%s", n1.output.String())
	}
	// Flags are a patch: the routing policy stays cost.
	out, errOut, code := cli("policy", "set", "demo.x", "--max-attempts", "2", "--locality", "local-only")
	if code != 0 || !strings.Contains(out, "changed locality, retry.max_attempts; other fields kept") {
		t.Fatalf("policy set --max-attempts: exit %d: %s%s", code, out, errOut)
	}
	out, _, _ = cli("policy", "get", "demo.x", "--json")
	var got struct {
		Policy struct {
			Policy   string
			Locality string
			Retry    struct{ MaxAttempts int }
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("policy get --json: %v: %s", err, out)
	}
	if got.Policy.Policy != "cost" || got.Policy.Retry.MaxAttempts != 2 || got.Policy.Locality != "LOCALITY_PREFERENCE_LOCAL_ONLY" {
		t.Errorf("after two patches the stored policy is %+v; want cost, 2 attempts, local-only", got.Policy)
	}
	_, errOut, code = cli("policy", "set", "demo.x", "--locality", "nearby")
	if code != 2 || !strings.Contains(errOut, "none, prefer-local, local-only") {
		t.Errorf("a bad --locality: exit %d: %s", code, errOut)
	}
	policyFile := filepath.Join(dir, "..", "policy.json")
	os.WriteFile(policyFile, []byte(`{"locality":"prefer-local"}`), 0o600)
	out, errOut, code = cli("policy", "set", "demo.x", "--file", policyFile)
	if code != 0 || !strings.Contains(out, "replaced by") {
		t.Errorf("policy set --file should say it replaces the policy: exit %d: %s%s", code, out, errOut)
	}
	out, _, code = cli("policy", "list")
	if code != 0 || !strings.Contains(out, "demo.x") || !strings.Contains(out, "prefer-local") {
		t.Errorf("policy list: exit %d:\n%s", code, out)
	}
	if out, errOut, code = cli("policy", "delete", "demo.x"); code != 0 || !strings.Contains(out, "deleted") {
		t.Errorf("policy delete: exit %d: %s%s", code, out, errOut)
	}
	if _, errOut, code = cli("policy", "delete", "demo.x"); code != 2 {
		t.Errorf("policy delete of a policy that is not there: exit %d, want 2: %s", code, errOut)
	}

	// node revoke of a name that is not a member asks for --force.
	_, errOut, code = cli("node", "revoke", "nosuchnode")
	if code != 2 || !strings.Contains(errOut, "--force") {
		t.Errorf("node revoke nosuchnode: exit %d, want 2 and a word about --force: %s", code, errOut)
	}
	if out, errOut, code = cli("node", "revoke", "nosuchnode", "--force", "--reason", "test"); code != 0 || !strings.Contains(out, "revoked") {
		t.Errorf("node revoke --force: exit %d: %s%s", code, out, errOut)
	}

	// call: --data is checked as JSON before it is sent; errors are usage errors.
	_, errOut, code = cli("call", "demo.upper", "--data", "hello")
	if code != 2 || !strings.Contains(errOut, "not valid JSON") {
		t.Errorf("call --data hello: exit %d: %s", code, errOut)
	}
	_, errOut, code = cli("call", "no.such.capability", "--data", `"x"`)
	if code != 2 || !strings.Contains(errOut, "no.such.capability") {
		t.Errorf("call of an unknown capability: exit %d: %s", code, errOut)
	}

	// quorum propose --agents: the count follows; errors speak in flags.
	_, errOut, code = cli("quorum", "propose", "--id", "q1", "--kind", "demo", "--data", "{}", "--agents", "n1/a,n1/b,n1/c", "--rule", "k-of-n", "--k", "1", "--deadline", "2s")
	if code == 0 || strings.Contains(errOut, "selection.") || strings.Contains(errOut, "QUORUM_RULE_KIND") || strings.Contains(errOut, "--count 4") {
		t.Errorf("quorum propose --agents a,b,c: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "--k") {
		t.Errorf("quorum propose with a bad --k should name --k: %s", errOut)
	}
}

// TestRunBindAddressNotOnHost: binding an address no interface has says so,
// instead of suggesting another meshnode holds the port.
func TestRunBindAddressNotOnHost(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "n1")
	// 192.0.2.0/24 is TEST-NET-1: never assigned to a host.
	p := startNode(t, dir, "--name", "n1", "--bind", "192.0.2.1:7946")
	if code := p.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	out := p.output.String()
	if !strings.Contains(out, "no interface of this host has that address") || strings.Contains(out, "another meshnode") {
		t.Errorf("the error should say the address is not this host's:\n%s", out)
	}
}
