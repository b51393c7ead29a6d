package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// callOnce makes one call to capability through node m.
func callOnce(t *testing.T, m *mnode, capability string, timeout time.Duration) (*agent.CallResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	c, err := agent.Dial(ctx, m.socket())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Call(ctx, capability, []byte("ping"))
}

// Scenario 3: a minority partition. Five nodes (servers n1-n3, clients n4,
// n5) are split into {n1, n2, n4} and {n3, n5}. The majority keeps
// accepting writes and serving calls; the minority serves stale reads and
// local calls and refuses writes with a clear error; after healing,
// everything converges.
func TestScenario3MinorityPartition(t *testing.T) {
	fullOnly(t)
	c := newCluster(t, 5, 3)
	c.net.requirePartitions(t)
	c.startAll()
	for _, m := range c.nodes {
		m.serveAgent("echo-"+m.name, "e2e.echo")
	}
	for _, m := range c.nodes {
		waitDiscoverReady(t, m, "e2e.echo", len(c.nodes))
	}
	n1, n3, n4, n5 := c.nodes[0], c.nodes[2], c.nodes[3], c.nodes[4]
	ctx := t.Context()
	prog := newProgress(t)
	if err := kvWrite(ctx, n1, "before", "1"); err != nil {
		t.Fatalf("write before the partition: %v", err)
	}
	waitUntil(t, 30*time.Second, "n5 to replicate the write", func() bool {
		v, err := staleRead(ctx, n5, "n1/before")
		return err == nil && v == "1"
	})

	ops, errs := 0, 0
	load := n4.startLoad("e2e.echo", 10*time.Minute, 2)
	waitCalls(t, load, 50)

	split := time.Now()
	c.net.split([]int{2, 4})
	t.Log("split: majority {n1, n2, n4}, minority {n3, n5}")

	// Majority writes succeed (after an election if n3 led).
	var majorityWrite time.Duration
	waitUntil(t, 90*time.Second, "a write on the majority side", func() bool {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ops++
		if err := kvWrite(wctx, n4, "during", "majority"); err != nil {
			errs++
			return false
		}
		return true
	})
	majorityWrite = time.Since(split)
	prog.set("faults=1 split; majority write accepted %v after the split", majorityWrite.Round(time.Millisecond))

	// The minority refuses writes with an error that says why.
	var minorityErr error
	for _, m := range []*mnode{n3, n5} {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		ops++
		err := kvWrite(wctx, m, "during", "minority")
		cancel()
		if err == nil {
			t.Fatalf("%s accepted a write on the minority side of a partition", m.name)
		}
		code := status.Code(err)
		msg := strings.ToLower(status.Convert(err).Message())
		if code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("%s: minority write failed with %v, want Unavailable or DeadlineExceeded: %v", m.name, code, err)
		}
		if !strings.Contains(msg, "leader") && !strings.Contains(msg, "quorum") {
			t.Errorf("%s: minority write error %q does not say that no leader/quorum is reachable", m.name, msg)
		}
		minorityErr = err
	}
	prog.set("faults=1 split; majority write accepted %v after the split; minority writes refused: %q",
		majorityWrite.Round(time.Millisecond), status.Convert(minorityErr).Message())

	// The minority serves stale reads and local calls.
	for _, m := range []*mnode{n3, n5} {
		ops++
		v, err := staleRead(ctx, m, "n1/before")
		if err != nil || v != "1" {
			t.Fatalf("%s: stale read on the minority side = %q, %v; want the value written before the split", m.name, v, err)
		}
	}
	var minorityCalls int
	waitUntil(t, 60*time.Second, "20 successful calls on the minority side, served there", func() bool {
		ops++
		res, err := callOnce(t, n5, "e2e.echo", 10*time.Second)
		if err != nil {
			errs++
			return false
		}
		if res.Node != "n3" && res.Node != "n5" {
			t.Fatalf("a call on the minority side was served by %s across the partition", res.AgentID)
		}
		minorityCalls++
		return minorityCalls >= 20
	})
	// The majority keeps serving calls: load through n4 made progress.
	p0 := load.progress()
	waitUntil(t, 60*time.Second, "majority calls during the partition", func() bool {
		return load.progress().OK >= p0.OK+200
	})

	prog.set("faults=1 split; majority write accepted %v after the split; minority writes refused: %q; minority stale reads and %d local calls served; majority calls %v; then healed at %s",
		majorityWrite.Round(time.Millisecond), status.Convert(minorityErr).Message(), minorityCalls, load.progress(), time.Now().UTC().Format(time.TimeOnly))
	healed := time.Now()
	c.net.heal()
	c.waitConverged(180 * time.Second)
	waitUntil(t, 60*time.Second, "the majority's write to reach n5", func() bool {
		v, err := staleRead(ctx, n5, "n4/during")
		return err == nil && v == "majority"
	})
	for _, m := range []*mnode{n3, n5} {
		waitUntil(t, 60*time.Second, m.name+" accepting writes again", func() bool {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return kvWrite(wctx, m, "after", "healed") == nil
		})
	}
	for _, m := range c.nodes {
		waitDiscoverReady(t, m, "e2e.echo", len(c.nodes))
	}
	converged := time.Since(healed)
	counts := load.finish()
	t.Logf("majority load: %v; samples: %v", counts, counts.Samples)
	if counts.errorRate() >= 0.01 {
		t.Errorf("majority calls: %.2f%% errors, want < 1%%", 100*counts.errorRate())
	}
	summary(t, "ops=%d (%d majority calls, %d probe ops); errors=%d majority call errors, %d probe retries; faults=1 split {n1,n2,n4}|{n3,n5}; majority write accepted %v after the split; minority write refused: %q; converged %v after healing",
		counts.total()+int64(ops), counts.total(), ops, counts.Errors, errs, majorityWrite.Round(time.Millisecond),
		status.Convert(minorityErr).Message(), converged.Round(time.Millisecond))
}

// staleRead reads agent id's v attribute from node m's local replica.
func staleRead(ctx context.Context, m *mnode, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, m.socket())
	if err != nil {
		return "", err
	}
	defer c.Close()
	agents, err := c.ListAgents(ctx)
	if err != nil {
		return "", err
	}
	for _, a := range agents {
		if a.GetId() == id {
			for _, cp := range a.GetCapabilities() {
				if v, ok := cp.GetAttributes()["v"]; ok {
					return v, nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s: agent %s not in the local registry", m.name, id)
}
