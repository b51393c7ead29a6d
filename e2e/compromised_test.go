package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// attackerAttempt is one line of e2e/attacker's output.
type attackerAttempt struct {
	Attack  string `json:"attack"`
	Target  string `json:"target"`
	Refused bool   `json:"refused"`
	Detail  string `json:"detail"`
}

func buildAttacker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "attacker")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/agentmesh/meshnode/e2e/attacker").CombinedOutput()
	if err != nil {
		t.Fatalf("build the attacker: %v\n%s", err, out)
	}
	return bin
}

// A compromised client node: its real certificate and data dir, the real
// binary on its own socket, and a modified client (e2e/attacker) that
// sends raw Raft and forwards admin writes with a forged origin to every
// server, from the client's own network namespace. Nothing changes on the
// servers — no revocation, no policy, no new voter, the same leader — and
// calls among the other nodes see no errors throughout.
func TestCompromisedClientChangesNothing(t *testing.T) {
	attacker := buildAttacker(t)
	c := newCluster(t, 4, 3)
	c.startAll()
	n1, n2, n4 := c.nodes[0], c.nodes[1], c.nodes[3]
	n1.serveAgent("echo-n1", "e2e.echo")
	waitDiscoverReady(t, n2, "e2e.echo", 1)
	before, err := n1.members(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	var calls, failed atomic.Int64
	var lastErr atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			calls.Add(1)
			if _, err := callOnce(t, n2, "e2e.echo", 5*time.Second); err != nil {
				failed.Add(1)
				lastErr.Store(err.Error())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	// The real binary on the client's socket, without an operator key:
	// admin commands are refused.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "revoke", n2.name, "--force", "--reason", "compromised client"}, "operator"},
		{[]string{"policy", "set", "e2e.attack", "--policy", "cost"}, "operator"},
	} {
		out, errOut, code := n4.cli(tc.args...)
		if code == 0 || !strings.Contains(strings.ToLower(errOut), tc.want) {
			t.Errorf("meshnode %s on the client: exit %d, %s%s; want a refusal saying %q", strings.Join(tc.args[:2], " "), code, out, errOut, tc.want)
		}
	}

	// The modified client.
	var targets []string
	for _, s := range c.nodes[:3] {
		targets = append(targets, s.name+"="+s.addr)
	}
	host, _, _ := net.SplitHostPort(n4.addr)
	cmd := c.net.command(n4.i, attacker, "-data-dir", n4.dir, "-bind", net.JoinHostPort(host, "0"),
		"-targets", strings.Join(targets, ","), "-victim", n2.name)
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("attacker: %v\n%s", err, out)
	}
	attempts := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var a attackerAttempt
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("attacker output %q: %v", sc.Text(), err)
		}
		attempts++
		if !a.Refused {
			t.Errorf("%s on %s went through: %s", a.Attack, a.Target, a.Detail)
		}
	}
	if attempts != 3*7 {
		t.Errorf("%d attack attempts reported, want 21:\n%s", attempts, out)
	}

	// Nothing changed on any server.
	for _, s := range c.nodes[:3] {
		v, err := s.members(context.Background())
		if err != nil {
			t.Fatalf("%s members: %v", s.name, err)
		}
		if v.leader != before.leader || v.voters != before.voters || !v.alive[n2.name] {
			t.Errorf("%s after the attack: leader %q voters %d (before %q, %d), n2 alive %v", s.name, v.leader, v.voters, before.leader, before.voters, v.alive[n2.name])
		}
		if out, _, code := s.cli("policy", "get", "e2e.attack"); code != 0 || strings.Contains(out, "(from e2e.attack,") {
			t.Errorf("%s has the attacker's policy: %s", s.name, out)
		}
	}
	if _, err := callOnce(t, n1, "e2e.echo", 10*time.Second); err != nil {
		t.Errorf("call after the attack: %v", err)
	}
	close(done)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d calls among the other nodes failed during the attack (last: %v)", failed.Load(), calls.Load(), lastErr.Load())
	}
	summary(t, "compromised client: %d attacks refused, %d calls among the other nodes, %d errors", attempts, calls.Load(), failed.Load())
}
