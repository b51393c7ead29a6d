package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Scenario 5: every node is restarted in turn (SIGTERM, start again) while
// two load generators call through the client nodes. No registration is
// lost, and calls through the nodes that are not restarting keep
// succeeding.
func TestScenario5RollingRestart(t *testing.T) {
	fullOnly(t)
	c := newCluster(t, 5, 3)
	prog := newProgress(t)
	prog.set("setting up 5 nodes with an agent each")
	c.startAll()
	for _, m := range c.nodes {
		m.serveAgent("echo-"+m.name, "e2e.echo")
	}
	for _, m := range c.nodes {
		waitDiscoverReady(t, m, "e2e.echo", len(c.nodes))
	}
	before := registeredIDs(t, c.nodes[0])
	loads := map[*mnode]*agentProc{}
	for _, m := range c.nodes[c.servers:] {
		loads[m] = m.startLoad("e2e.echo", 20*time.Minute, 2)
		waitCalls(t, loads[m], 50)
	}
	var otherCalls, otherErrors int64
	var slowest time.Duration
	for _, m := range c.nodes {
		snap := map[*mnode]loadCounts{}
		for lm, l := range loads {
			snap[lm] = l.progress()
		}
		begin := time.Now()
		prog.set("restarting %s; calls through nodes not restarting so far: %d errors of %d", m.name, otherErrors, otherCalls)
		t.Logf("restarting %s", m.name)
		m.restart(true)
		m.waitReady(90 * time.Second)
		c.waitConverged(120 * time.Second)
		for _, o := range c.nodes {
			waitDiscoverReady(t, o, "e2e.echo", len(c.nodes))
		}
		slowest = max(slowest, time.Since(begin))
		// Calls made through the nodes that stayed up must keep working.
		for lm, l := range loads {
			p0 := l.progress()
			waitUntil(t, 60*time.Second, "calls through "+lm.name+" after restarting "+m.name, func() bool {
				return l.progress().OK >= p0.OK+50
			})
			if lm == m {
				continue
			}
			now := l.progress()
			otherCalls += now.total() - snap[lm].total()
			otherErrors += now.Errors - snap[lm].Errors
		}
	}
	var total, errs int64
	for lm, l := range loads {
		counts := l.finish()
		t.Logf("load through %s: %v; samples: %v", lm.name, counts, counts.Samples)
		total += counts.total()
		errs += counts.Errors
	}
	after := registeredIDs(t, c.nodes[0])
	for id := range before {
		if !after[id] {
			t.Errorf("registration %s was lost in the rolling restart", id)
		}
	}
	if otherCalls == 0 || float64(otherErrors) >= 0.01*float64(otherCalls) {
		t.Errorf("calls through nodes that were not restarting: %d errors of %d, want < 1%%", otherErrors, otherCalls)
	}
	summary(t, "ops=%d calls; errors=%d in all (%d of %d through nodes not restarting at the time); faults=%d graceful restarts (every node, in turn); registrations kept %d/%d; slowest restart to ready+converged+agents back %v",
		total, errs, otherErrors, otherCalls, len(c.nodes), len(after), len(before), slowest.Round(time.Millisecond))
}

// registeredIDs lists the registered agents with a consistent read.
func registeredIDs(t *testing.T, m *mnode) map[string]bool {
	t.Helper()
	var resp *meshnodev1.ListAgentsResponse
	waitUntil(t, 60*time.Second, "a consistent agent list from "+m.name, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		resp, err = meshnodev1.NewRegistryServiceClient(m.grpcConn()).ListAgents(ctx, &meshnodev1.ListAgentsRequest{Consistency: meshnodev1.Consistency_CONSISTENCY_CONSISTENT})
		return err == nil
	})
	ids := map[string]bool{}
	for _, a := range resp.GetAgents() {
		ids[a.GetId()] = true
	}
	return ids
}

// Scenario 7: a revoked node is refused by every peer. n4's certificate is
// revoked through n1; every other node then stops seeing n4 alive, calls
// no longer reach n4's agent, n4 reaches no other node's agent, and a
// restarted n4 does not get back in.
func TestScenario7RevokedNodeRefused(t *testing.T) {
	fullOnly(t)
	// n4 stays up after its revocation: this scenario checks what its peers do.
	c := newCluster(t, 4, 3, "--exit-on-revoke=false")
	c.startAll()
	n1, n4 := c.nodes[0], c.nodes[3]
	prog := newProgress(t)
	n4.serveAgent("only-here", "e2e.revoked")
	n1.serveAgent("echo-n1", "e2e.echo")
	waitDiscoverReady(t, n1, "e2e.revoked", 1)
	waitDiscoverReady(t, n4, "e2e.echo", 1)
	ops, errs := 0, 0
	if _, err := callOnce(t, n1, "e2e.revoked", 10*time.Second); err != nil {
		t.Fatalf("call to n4's agent before the revocation: %v", err)
	}
	ops++

	out, errOut, code := n1.cli("node", "revoke", "n4", "--reason", "e2e scenario 7")
	ops++
	if code != 0 {
		t.Fatalf("meshnode node revoke n4: exit %d: %s%s", code, out, errOut)
	}
	revoked := time.Now()
	prog.set("faults=1 revocation of n4 (meshnode node revoke: exit 0); waiting up to 120s for every peer to refuse n4")
	// refused reports whether every peer refuses n4: none sees it alive,
	// n4's agent is unreachable from n1, and n4 reaches no agent elsewhere.
	refused := func(checkOutbound bool) (bool, string) {
		c.checkCrashed()
		for _, m := range c.nodes[:3] {
			v, err := m.members(t.Context())
			if err != nil || v.alive["n4"] {
				return false, fmt.Sprintf("%s still sees n4 alive (%v)", m.name, err)
			}
		}
		ops++
		if res, err := callOnce(t, n1, "e2e.revoked", 5*time.Second); err == nil {
			return false, "n1's call still reached " + res.AgentID
		}
		if checkOutbound {
			ops++
			if res, err := callOnce(t, n4, "e2e.echo", 5*time.Second); err == nil {
				return false, "n4's call still reached " + res.AgentID
			}
		}
		return true, ""
	}
	// poll checks refused until it holds or within passes.
	poll := func(within time.Duration, checkOutbound bool) (bool, string) {
		deadline := time.Now().Add(within)
		for {
			ok, why := refused(checkOutbound)
			if ok || time.Now().After(deadline) {
				return ok, why
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	refusedNow, why := poll(60*time.Second, true)
	refusedAfter := time.Since(revoked)
	verdict := fmt.Sprintf("every peer refused n4 %v after the revocation", refusedAfter.Round(time.Millisecond))
	if !refusedNow {
		// Keep going: whether a restarted n4 is refused tells the
		// handshake check apart from the teardown of existing connections.
		t.Errorf("60s after revoking n4, it is not refused by every peer: %s", why)
		verdict = "NOT refused 60s after the revocation (" + why + ")"
	}
	prog.set("faults=1 revocation of n4; %s; restarting n4", verdict)

	// A restart does not bring n4 back: its certificate stays revoked.
	restartAt := time.Now()
	n4.restart(false)
	restartOK, why := poll(60*time.Second, false)
	if !restartOK {
		t.Fatalf("after its restart, the revoked n4 is still not refused: %s", why)
	}
	refusedRestart := time.Now()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range c.nodes[:3] {
			ops++
			if v, err := m.members(t.Context()); err == nil && v.alive["n4"] {
				t.Fatalf("%s sees the revoked n4 alive again after its restart", m.name)
			}
		}
		ops++
		if res, err := callOnce(t, n1, "e2e.revoked", 3*time.Second); err == nil {
			t.Fatalf("after its restart, the revoked n4's agent answered a call through n1 (%s)", res.AgentID)
		} else {
			errs++
		}
		time.Sleep(500 * time.Millisecond) // a bounded observation window, not synchronisation
	}
	line := fmt.Sprintf("ops=%d (calls, membership checks, revoke); errors=%d expected refusals; faults=1 revocation + 1 SIGKILL restart of the revoked node; %s; after its restart refused within %v and for the next 20s",
		ops, errs, verdict, refusedRestart.Sub(restartAt).Round(time.Millisecond))
	if t.Failed() {
		prog.set("%s", line)
		return
	}
	summary(t, "%s", line)
}

// Scenario 8: a quorum decision still completes when one of the 4 voter
// nodes is cut off. Every node has a voting agent; n3 (a Raft server too)
// is cut off from the rest (its link is taken down; on loopback it is
// paused with SIGSTOP instead), then a BFT proposal (3 of 4) is made
// through n1. It must be decided, and its certificate must verify.
func TestScenario8QuorumWithVoterCutOff(t *testing.T) {
	fullOnly(t)
	c := newCluster(t, 4, 3)
	prog := newProgress(t)
	prog.set("setting up 4 nodes with a voting agent each")
	c.startAll()
	for _, m := range c.nodes {
		m.serveAgent("voter-"+m.name, "e2e.vote", "--vote")
	}
	for _, m := range c.nodes {
		waitDiscoverReady(t, m, "e2e.vote", len(c.nodes))
	}
	n1, n3 := c.nodes[0], c.nodes[2]
	how := "link down"
	if c.net.netns {
		c.net.isolate(n3.i)
	} else {
		how = "SIGSTOP (loopback: no partitions)"
		n3.pause()
	}
	cut := time.Now()
	prog.set("faults=1 (n3 cut off: %s); proposing through n1", how)
	out, errOut, code := runCLI(t, nil, "quorum", "propose", "--socket", n1.socket(), "--json",
		"--id", "e2e-8", "--kind", "e2e.decide", "--data", `{"scenario":8}`,
		"--capability", "e2e.vote", "--count", "4", "--deadline", "60s", "--wait", "--timeout", "120s")
	decided := time.Since(cut)
	if code != 0 {
		t.Fatalf("quorum propose: exit %d: %s%s", code, out, errOut)
	}
	var d struct {
		Status  string `json:"status"`
		Outcome string `json:"outcome"`
		Detail  string `json:"detail"`
		Votes   []struct {
			AgentID string `json:"voterAgentId"`
		} `json:"votes"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("quorum propose --json: %v\n%s", err, out)
	}
	if d.Status != "DECISION_STATUS_DECIDED" || d.Outcome != "CHOICE_APPROVE" {
		t.Fatalf("decision = %s / %s (%s), want DECIDED / APPROVE\n%s", d.Status, d.Outcome, d.Detail, out)
	}
	for _, v := range d.Votes {
		if strings.HasPrefix(v.AgentID, "n3/") {
			t.Errorf("a vote from the cut-off n3 was counted: %s", v.AgentID)
		}
	}
	// Verify on another node; its local replica may trail the commit for
	// a moment, so "no decision" is retried, any other failure is not.
	verifyTries := 0
	waitUntil(t, 30*time.Second, "quorum verify e2e-8 on n2", func() bool {
		verifyTries++
		vout, verr, vcode := runCLI(t, nil, "quorum", "verify", "e2e-8", "--socket", c.nodes[1].socket())
		if vcode != 0 && !strings.Contains(verr, "no decision") {
			t.Fatalf("quorum verify e2e-8: exit %d: %s%s", vcode, vout, verr)
		}
		return vcode == 0
	})
	if c.net.netns {
		c.net.heal()
	} else {
		n3.resume()
	}
	healed := time.Now()
	c.waitConverged(120 * time.Second)
	summary(t, "ops=1 proposal (4 voters, bft 3-of-4) + verify (%d tries until n2 had the decision); errors=0; faults=1 (n3 cut off: %s); decided %s (%s) %v after the cut; cluster converged %v after healing",
		verifyTries, how, d.Outcome, d.Detail, decided.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
}

// certStatus reads node m's certificate status.
func certStatus(t *testing.T, m *mnode) (*meshnodev1.CertificateStatusResponse, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return meshnodev1.NewPKIServiceClient(m.grpcConn()).CertificateStatus(ctx, &meshnodev1.CertificateStatusRequest{})
}

// Scenario 6: node certificates live 5 minutes (the minimum) and renew at
// 2/3 of their life while calls run across the nodes. Load runs until every
// node has renewed and every original certificate has expired, so every
// handshake after that uses a renewed certificate; callers see no errors.
// Then one node restarts and must rejoin with its renewed certificate.
func TestScenario6ShortCertRenewal(t *testing.T) {
	fullOnly(t)
	c := newCluster(t, 3, 3, "--cert-lifetime", "5m")
	prog := newProgress(t)
	prog.set("setting up 3 nodes with 5m certificates")
	c.startAll()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	n2.serveAgent("echo-n2", "e2e.echo")
	n3.serveAgent("echo-n3", "e2e.echo")
	waitDiscoverReady(t, n1, "e2e.echo", 2)
	first := map[string]*meshnodev1.CertificateStatusResponse{}
	var lastExpiry time.Time
	for _, m := range c.nodes {
		st, err := certStatus(t, m)
		if err != nil {
			t.Fatalf("%s: certificate status: %v", m.name, err)
		}
		if life := st.GetNotAfter().AsTime().Sub(st.GetNotBefore().AsTime()); life > 6*time.Minute {
			t.Fatalf("%s: certificate lives %v, want about 5m (--cert-lifetime)", m.name, life)
		}
		first[m.name] = st
		lastExpiry = later(lastExpiry, st.GetNotAfter().AsTime())
	}
	start := time.Now()
	load := n1.startLoad("e2e.echo", 15*time.Minute, 2)
	waitCalls(t, load, 50)
	renewedAt := map[string]time.Duration{}
	waitUntil(t, 5*time.Minute, "every node to renew its certificate", func() bool {
		c.checkCrashed()
		for _, m := range c.nodes {
			if _, ok := renewedAt[m.name]; ok {
				continue
			}
			if st, err := certStatus(t, m); err == nil && st.GetSerial() != first[m.name].GetSerial() {
				renewedAt[m.name] = time.Since(start)
				t.Logf("%s renewed: serial %s, valid until %s", m.name, st.GetSerial(), st.GetNotAfter().AsTime().Format(time.TimeOnly))
			}
		}
		prog.set("renewed so far: %v; load %v", renewedAt, load.progress())
		return len(renewedAt) == len(c.nodes)
	})
	waitUntil(t, 5*time.Minute, "every original certificate to expire (plus 15s)", func() bool {
		c.checkCrashed()
		return time.Now().After(lastExpiry.Add(15 * time.Second))
	})
	c.waitConverged(60 * time.Second)
	p0 := load.progress()
	waitUntil(t, 60*time.Second, "calls after the original certificates expired", func() bool {
		return load.progress().OK >= p0.OK+200
	})
	counts := load.finish()
	t.Logf("load: %v; samples: %v", counts, counts.Samples)
	if counts.Errors > 0 {
		t.Errorf("%d calls failed across certificate renewals: %v", counts.Errors, counts.Samples)
	}
	// A fresh handshake with renewed certificates only: restart n3.
	restarted := time.Now()
	n3.restart(true)
	n3.waitReady(90 * time.Second)
	c.waitConverged(120 * time.Second)
	waitDiscoverReady(t, n1, "e2e.echo", 2)
	rejoin := time.Since(restarted)
	var slowest time.Duration
	for _, d := range renewedAt {
		slowest = max(slowest, d)
	}
	summary(t, "ops=%d calls; errors=%d; faults=%d certificate renewals (5m lifetime) + expiry of every original certificate + 1 restart; last node renewed %v into the load; restarted node rejoined with its renewed certificate in %v",
		counts.total(), counts.Errors, len(renewedAt), slowest.Round(time.Second), rejoin.Round(time.Millisecond))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
