package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// taskEvent is one line of `meshnode task ... --json`.
type taskEvent struct {
	Seq      string `json:"seq"`
	Artifact *struct {
		Name string `json:"name"`
	} `json:"artifact"`
	Status *struct {
		State string `json:"state"`
	} `json:"status"`
}

func parseTaskEvents(t *testing.T, out string) []taskEvent {
	t.Helper()
	var evs []taskEvent
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var ev taskEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not an event: %q: %v", l, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestTaskWatchResumesAfterCallerRestart: a task runs on n2's agent;
// `meshnode task submit --watch` on n3 loses n3 to SIGKILL mid-task; after
// n3 restarts, `meshnode task watch --after N` on it prints exactly the
// events after the last one printed, through to the end.
func TestTaskWatchResumesAfterCallerRestart(t *testing.T) {
	c := newCluster(t, 3, 1)
	c.startAll()
	n2, n3 := c.nodes[1], c.nodes[2]
	n2.serveAgent("worker", "work", "--task", "12", "--delay", "400ms")
	waitDiscoverReady(t, n3, "work", 1)

	cli := exec.Command(binary, "task", "submit", "work", "--data", `"x"`, "--id", "job-7", "--watch", "--json", "--socket", n3.socket())
	cli.Env = cleanEnv()
	out, err := cli.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	var first []string
	sc := bufio.NewScanner(out)
	for len(first) < 5 && sc.Scan() {
		first = append(first, sc.Text())
	}
	n3.kill()
	for sc.Scan() {
		first = append(first, sc.Text())
	}
	if err := cli.Wait(); err == nil {
		t.Fatalf("task submit --watch exited 0 although its node was killed")
	}
	firstEvs := parseTaskEvents(t, strings.Join(first, "\n"))
	if len(firstEvs) < 5 {
		t.Fatalf("printed %d events before the kill; want at least 5", len(firstEvs))
	}
	last := firstEvs[len(firstEvs)-1].Seq

	n3.start()
	n3.waitReady(60 * time.Second)
	waitDiscoverReady(t, n3, "work", 1)
	var rest string
	// A watch opened while the restarted node's peer connections are still
	// settling can stall; bound each try so the loop tries again.
	waitUntil(t, 90*time.Second, "task watch on the restarted n3 succeeds", func() bool {
		stdout, stderr, code := n3.cli("task", "watch", "n2/job-7", "--after", last, "--json", "--timeout", "20s")
		if code != 0 {
			t.Logf("task watch exited %d: %s", code, strings.TrimSpace(stderr))
			return false
		}
		rest = stdout
		return true
	})
	all := append(firstEvs, parseTaskEvents(t, rest)...)
	var steps []string
	for i, ev := range all {
		if ev.Seq != strconv.Itoa(i+1) {
			t.Fatalf("event %d has seq %s (resumed after %s): %+v", i+1, ev.Seq, last, all)
		}
		if ev.Artifact != nil {
			steps = append(steps, ev.Artifact.Name)
		}
	}
	for i, s := range steps {
		if s != fmt.Sprintf("step-%d", i+1) {
			t.Fatalf("artifacts %v: want step-1 .. step-12 once each", steps)
		}
	}
	if len(steps) != 12 || all[len(all)-1].Status == nil || all[len(all)-1].Status.State != "TASK_STATE_COMPLETED" {
		t.Fatalf("got %d artifacts, last event %+v; want 12 and COMPLETED", len(steps), all[len(all)-1])
	}
	t.Logf("resumed after event %s of %d across a restart of the caller's node", last, len(all))
}
