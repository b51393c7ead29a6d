package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"

	"github.com/agentmesh/meshnode/agent"
)

// chromiumPath finds Debian's chromium (scripts/install-deps.sh installs it).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed: scripts/install-deps.sh installs Debian's package; the dashboard test drives it headless")
	return ""
}

// artifactDir is where the dashboard test leaves its screenshots:
// $MESHNODE_E2E_ARTIFACTS/dashboard, or a directory under the temp dir
// that outlives the test (its path is logged).
func artifactDir(t *testing.T) string {
	base := os.Getenv("MESHNODE_E2E_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "meshnode-e2e-artifacts")
	}
	dir := filepath.Join(base, "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// startDashboard runs `meshnode dashboard` against socket and returns its URL.
func startDashboard(t *testing.T, socket string) string {
	t.Helper()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	cmd := exec.Command(binary, "dashboard", "--no-browser", "--socket", socket)
	cmd.Stdout, cmd.Stderr, cmd.Env = out, errOut, cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGINT); <-done })
	re := regexp.MustCompile(`dashboard: (http://127\.0\.0\.1:\d+/)`)
	var url string
	waitUntil(t, 30*time.Second, "the dashboard prints its URL", func() bool {
		select {
		case <-done:
			t.Fatalf("meshnode dashboard exited: %s%s", out.String(), errOut.String())
		default:
		}
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	return url
}

// TestDashboardInChromium: four real nodes (BFT's smallest electorate is
// four voters on distinct hosts), six agents on three of them calling each
// other (one callee fails half its calls, one is slow) and four voters that
// decide a real quorum proposal. `meshnode dashboard` serves the UI; a
// headless Chromium opens it, and the test reads from the page that the
// graph's vertices and edges are the traffic it made, the failing edge is
// marked other than by colour, the pair matrix puts the slowest pair
// first, the decision verifies in the browser and a tampered copy fails,
// and that, with the node gone, the page says so instead of showing the
// old figures. Every request the page makes stays on 127.0.0.1.
func TestDashboardInChromium(t *testing.T) {
	chrome := chromiumPath(t)
	shots := artifactDir(t)
	c := newCluster(t, 4, 1)
	c.startAll()
	n1 := c.nodes[0]

	// Voters, one per node, and a decision they sign.
	for _, m := range c.nodes {
		m.serveAgent("voter-"+m.name, "e2e.dashvote", "--vote")
	}
	waitDiscoverReady(t, n1, "e2e.dashvote", 4)
	out, errOut, code := n1.cli("quorum", "propose", "--json", "--id", "e2e-dash", "--kind", "e2e.payment",
		"--data", `{"amount": 42}`, "--capability", "e2e.dashvote", "--count", "4", "--deadline", "20s", "--wait", "--timeout", "40s")
	if code != 0 || !strings.Contains(out, "DECISION_STATUS_DECIDED") {
		t.Fatalf("quorum propose: exit %d: %s%s", code, out, errOut)
	}

	// Six agents: callers planner (n1) and auditor (n3); callees lookup
	// (fast), flaky (fails every other call), slow (40 ms) and idle.
	var flakyCalls sync.Mutex
	flakyN := 0
	reply := func(delay time.Duration) agent.HandlerFunc {
		return func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return &agent.Response{Payload: r.Payload}, nil
		}
	}
	agents := map[string]*agent.Agent{}
	for _, a := range []struct {
		node       int
		name, capa string
		h          agent.HandlerFunc
	}{
		{0, "planner", "planner.plan", reply(0)},
		{2, "auditor", "audit.run", reply(0)},
		{1, "lookup", "inventory.lookup", reply(time.Millisecond)},
		{2, "flaky", "risk.score", func(context.Context, *agent.Request) (*agent.Response, error) {
			flakyCalls.Lock()
			flakyN++
			fail := flakyN%2 == 0
			flakyCalls.Unlock()
			if fail {
				return nil, agent.Errorf(codes.Internal, "risk model unavailable")
			}
			return &agent.Response{}, nil
		}},
		{0, "slow", "report.slow", reply(40 * time.Millisecond)},
		{1, "idle", "idle.nothing", reply(0)},
	} {
		ag := &agent.Agent{Name: a.name, Socket: c.nodes[a.node].socket()}
		ag.Handle(agent.Capability{Name: a.capa}, a.h)
		runAgent(t, ag)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := ag.Up(ctx); err != nil {
			t.Fatalf("agent %s: %v", a.name, err)
		}
		cancel()
		agents[a.name] = ag
	}
	for _, capa := range []string{"inventory.lookup", "risk.score", "report.slow"} {
		waitDiscoverReady(t, n1, capa, 1)
		waitDiscoverReady(t, c.nodes[2], capa, 1)
	}
	// The router keeps sending to the failing agent (no quality floor, no
	// breaker), so its pair's error rate is the agent's own.
	policyFile := filepath.Join(t.TempDir(), "risk-policy.json")
	if err := os.WriteFile(policyFile, []byte(`{"qualityHardFloor": 0, "circuitBreaker": {"disabled": true}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := n1.cli("policy", "set", "risk.score", "--file", policyFile); code != 0 {
		t.Fatalf("policy set risk.score: %s", errOut)
	}
	want := map[string]bool{"n1/planner->n2/lookup": true, "n1/planner->n3/flaky": true, "n3/auditor->n1/slow": true}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	var wg sync.WaitGroup
	for _, l := range []struct{ caller, capa string }{{"planner", "inventory.lookup"}, {"planner", "risk.score"}, {"auditor", "report.slow"}} {
		wg.Go(func() {
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				agents[l.caller].Call(cctx, l.capa, []byte("x")) // failures are the point; the page shows them
				ccancel()
			}
		})
	}
	wg.Wait()
	cancel()

	// An operator with a role other than viewer is refused, naming the role.
	keyFile := filepath.Join(t.TempDir(), "pol.key")
	if _, e, code := runCLI(t, nil, "operator", "keygen", "--out", keyFile); code != 0 {
		t.Fatalf("operator keygen: %s", e)
	}
	if _, e, code := n1.cli("operator", "add", "pol", "--role", "policy", "--pubkey", keyFile+".pub"); code != 0 {
		t.Fatalf("operator add pol: %s", e)
	}
	if o, e, code := n1.cli("dashboard", "--no-browser", "--operator-key", keyFile); code == 0 || !strings.Contains(e, `"viewer"`) {
		t.Fatalf("dashboard with a policy-only key: exit %d, %s%s; want a refusal naming the viewer role", code, o, e)
	}

	// The first admin's key (n1's bootstrap key) may view.
	url := startDashboard(t, n1.socket())
	origin := strings.TrimSuffix(url, "/")

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 800), chromedp.Flag("disable-gpu", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	// No timeout on the browser's own context (it would stop the browser
	// mid-test); each step below is bounded by waitUntil or its own timeout.
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	var reqMu sync.Mutex
	var requests []string
	// Network is enabled by chromedp on every tab; this records every
	// request the page makes, to check none leaves 127.0.0.1.
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			reqMu.Lock()
			requests = append(requests, e.Request.URL)
			reqMu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}

	// The graph.
	type edge struct{ Source, Target, Capability, Level, Label, LineStyle string }
	type graphState struct {
		Agents []string
		Edges  []edge
	}
	var graph graphState
	step("open the graph", chromedp.Navigate(url+"#graph"))
	waitUntil(t, 20*time.Second, "the graph shows the three pairs", func() bool {
		g, err := chromedp.Run(bctx, chromedp.Evaluate[graphState](`(window.dashboard && window.dashboard.graph()) || {agents: [], edges: []}`))
		graph = g
		return err == nil && len(graph.Edges) >= len(want)
	})
	step("screenshot the graph", chromedp.Sleep(300*time.Millisecond), shot("graph"))
	wantAgents := []string{"n1/planner", "n1/slow", "n1/voter-n1", "n2/idle", "n2/lookup", "n2/voter-n2", "n3/auditor", "n3/flaky", "n3/voter-n3", "n4/voter-n4"}
	if !slices.Equal(graph.Agents, wantAgents) {
		t.Errorf("graph vertices = %v; want the registered agents %v", graph.Agents, wantAgents)
	}
	got := map[string]bool{}
	for _, e := range graph.Edges {
		key := e.Source + "->" + e.Target
		got[key] = true
		failing := key == "n1/planner->n3/flaky"
		if failing != (e.Level == "failing") || failing != (e.LineStyle == "dotted") || failing != strings.Contains(e.Label, "% err") {
			t.Errorf("edge %s: level %q, line %q, label %q; the failing pair (and only it) must be marked failing, dotted and labelled", key, e.Level, e.LineStyle, e.Label)
		}
	}
	if len(got) != len(want) || len(graph.Edges) != len(want) {
		t.Errorf("graph edges = %+v; want exactly the pairs the test made %v", graph.Edges, want)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("graph lacks the edge %s", k)
		}
	}

	// The keyboard's way to an edge: its button in the list shows its figures.
	step("select the failing edge from the list", chromedp.Click(`button[data-edge^="n1/planner->n3/flaky"]`))
	if d := text(`#detail`); !strings.Contains(d, "risk.score") || !strings.Contains(d, "failing") {
		t.Errorf("the failing edge's detail reads %q; want its capability and level", d)
	}

	// Filtered to pairs with errors, the graph keeps the failing edge only.
	onlyErrors, err := chromedp.Run(bctx, chromedp.Evaluate[graphState](`(() => {
		const box = document.querySelector('#f-err');
		box.checked = true;
		box.dispatchEvent(new Event('change'));
		return window.dashboard.graph();
	})()`))
	if err != nil || len(onlyErrors.Edges) != 1 || onlyErrors.Edges[0].Target != "n3/flaky" {
		t.Errorf("graph filtered to errors: %+v (%v); want the one edge to n3/flaky", onlyErrors.Edges, err)
	}
	step("screenshot the filtered graph", chromedp.Sleep(200*time.Millisecond), shot("graph-errors-only"))

	// The pair matrix: the slow pair (40 ms) is first among the slowest.
	step("open the pair matrix", chromedp.Navigate(url+"#matrix"), chromedp.WaitVisible(`#slowest tbody tr`), shot("matrix"))
	slowFirst, idle := text(`#slowest tbody tr:first-child`), text(`#idle`)
	if !strings.HasPrefix(strings.TrimSpace(slowFirst), "n3/auditor") || !strings.Contains(slowFirst, "n1/slow") {
		t.Errorf("the slowest pair listed first is %q; want n3/auditor → n1/slow", slowFirst)
	}
	if !strings.Contains(idle, "n2/idle") || strings.Contains(idle, "n2/lookup") {
		t.Errorf("agents with no incoming traffic: %q; want n2/idle and not n2/lookup", idle)
	}

	// The cluster: four members.
	step("open the cluster", chromedp.Navigate(url+"#cluster"), chromedp.WaitVisible(`.card`))
	waitUntil(t, 10*time.Second, "the cluster page lists 4 members", func() bool {
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('.card').length`))
		return err == nil && n == 4
	})
	step("screenshot the cluster", shot("cluster"))
	if leader := text(`#leader`); !strings.Contains(leader, "n1") {
		t.Errorf("the cluster page names %q as the Raft leader; want n1", leader)
	}
	if exp := text(`#cert-expiry`); !strings.Contains(exp, "T") {
		t.Errorf("the cluster page shows no certificate expiry: %q", exp)
	}

	// Decisions: the real one verifies in the browser.
	step("open the decisions", chromedp.Navigate(url+"#decisions"), chromedp.WaitVisible(`a[href="#decision/e2e-dash"]`), shot("decisions"),
		chromedp.Click(`a[href="#decision/e2e-dash"]`), chromedp.WaitVisible(`#verdict`), shot("decision-verified"))
	verdict := text(`#verdict`)
	verified, err := chromedp.Run(bctx, chromedp.AttributeValue(`#verdict`, "data-verified"))
	if err != nil || verified.Value != "true" || !strings.Contains(verdict, "VERIFIED") {
		t.Errorf("decision e2e-dash in the browser: %q (data-verified=%q, %v); want verified", verdict, verified.Value, err)
	}
	// A bundle changed after signing fails, naming the check.
	tamper := `(async () => {
		const b = await window.dashboard.getJSON('/api/decisions/e2e-dash/bundle');
		b.bundle.decision.certificate.votes[0].reason += ' (edited)';
		const v = await window.dashboard.verifyAndShow(b.bundle, b.trust);
		return v.verified ? '' : v.failed.what;
	})()`
	failedCheck, err := chromedp.Run(bctx, chromedp.Evaluate[string](tamper, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("verify a tampered bundle: %v", err)
	}
	step("screenshot the tampered bundle", shot("decision-tampered"))
	verdict = text(`#verdict`)
	if !strings.Contains(failedCheck, "Ed25519 signature") || !strings.Contains(verdict, "FAILED") || !strings.Contains(verdict, "signature") {
		t.Errorf("tampered bundle: failed check %q, verdict %q; want a failed Ed25519 signature check shown", failedCheck, verdict)
	}

	// The node goes away: the page says so and shows no old figures.
	n1.kill()
	var banner string
	var rows int
	step("open the pairs without a node", chromedp.Navigate(url+"#matrix"))
	waitUntil(t, 15*time.Second, "the page says the node is unreachable", func() bool {
		b, err1 := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('#banner').hidden ? '' : document.querySelector('#banner').textContent`))
		r, err2 := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#view tr').length`))
		banner, rows = b, r
		return err1 == nil && err2 == nil && strings.Contains(banner, "node unreachable, retrying")
	})
	step("screenshot unreachable", shot("unreachable"))
	if rows != 0 {
		t.Errorf("with the node unreachable the page still shows %d table rows", rows)
	}

	reqMu.Lock()
	defer reqMu.Unlock()
	if len(requests) == 0 {
		t.Fatal("no network requests were seen: the check below would prove nothing")
	}
	for _, u := range requests {
		if !strings.HasPrefix(u, origin+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the page requested %s, outside %s", u, origin)
		}
	}
	t.Logf("%d requests, all to %s", len(requests), origin)
}
