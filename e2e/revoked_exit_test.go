package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestRevokedNodeSaysSoAndExits: a client node revoked through a server
// logs once, at ERROR and with the reason, that it was revoked, and `meshnode
// run` exits 3 with a message saying what to do, within seconds. Restarted
// with --exit-on-revoke=false, it stays up and keeps being refused, and
// the server logs at most one refusal line for it a minute instead of
// several a second.
func TestRevokedNodeSaysSoAndExits(t *testing.T) {
	c := newCluster(t, 2, 1)
	c.startAll()
	n1, n2 := c.nodes[0], c.nodes[1]
	const reason = "e2e: a revoked client exits"
	if out, errOut, code := n1.cli("node", "revoke", "n2", "--reason", reason); code != 0 {
		t.Fatalf("meshnode node revoke n2: exit %d: %s%s", code, out, errOut)
	}
	n2.mu.Lock()
	n2.up = false // its exit is what this test waits for
	p := n2.p
	n2.mu.Unlock()
	revokedAt := time.Now()
	code := p.wait(t, 15*time.Second)
	t.Logf("n2 exited %d, %v after the revocation", code, time.Since(revokedAt).Round(time.Millisecond))
	out := p.output.String()
	if code != 3 {
		t.Fatalf("revoked n2 exited %d, want 3:\n%s", code, tail(out, 30))
	}
	if n := strings.Count(out, "level=ERROR msg=\"this node was revoked"); n != 1 || !strings.Contains(out, reason) {
		t.Fatalf("revoked n2 logged its revocation at ERROR %d times (want once, with the reason %q):\n%s", n, reason, tail(out, 30))
	}
	last := tail(strings.TrimSpace(out), 1)
	if !strings.Contains(last, "meshnode: this node was revoked by the cluster") || !strings.Contains(last, "another name") {
		t.Fatalf("last line of revoked n2 does not say it was revoked and what to do: %q", last)
	}

	// Kept up, the revoked node retries; n1 logs its refusals rate-limited.
	c.extra = append(c.extra, "--exit-on-revoke=false")
	n2.start()
	n2.waitReady(30 * time.Second)
	n1Before := strings.Count(n1.p.output.String(), "refused peer certificate")
	waitUntil(t, 20*time.Second, "the kept-up revoked n2 logs its revocation", func() bool {
		return strings.Contains(n2.p.output.String(), "staying up because exit_on_revoke is false")
	})
	time.Sleep(4 * time.Second) // a window in which n2 retries many times
	if !n2.running() {
		t.Fatalf("n2 with --exit-on-revoke=false exited:\n%s", tail(n2.p.output.String(), 30))
	}
	var refusals []string
	for _, l := range strings.Split(n1.p.output.String(), "\n") {
		if strings.Contains(l, "refused peer certificate") && strings.Contains(l, "/n2") {
			refusals = append(refusals, l)
		}
	}
	if len(refusals) > 3 {
		t.Fatalf("n1 logged %d refusals of n2 (%d lines in all since its restart), want at most a few:\n%s",
			len(refusals), strings.Count(n1.p.output.String(), "refused peer certificate")-n1Before, strings.Join(refusals, "\n"))
	}
	t.Logf("n1 logged %d refusal lines for n2", len(refusals))
}
