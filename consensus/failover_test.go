package consensus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestLeaderFailover(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d servers", n), func(t *testing.T) {
			c := newCluster(t, n, 0, func(cfg *Config) { cfg.Voters = n })
			old := c.leader()
			mustApply(t, old.store, agentCmd("n1/before", "x"))
			c.kill(old)
			start := time.Now()
			var writer *testNode
			for _, s := range c.servers() {
				if s != old {
					writer = s
					break
				}
			}
			idx, _ := mustApply(t, writer.store, agentCmd("n1/after", "x"))
			t.Logf("%d servers: first write after leader kill took %s (index %d)", n, time.Since(start), idx)
			nl := c.leader()
			if nl == old {
				t.Fatal("the killed server is still leader")
			}
			// The old leader comes back as a follower and catches up.
			c.restart(old)
			waitFor(t, 10*time.Second, "restarted server to catch up", func() bool { return old.store.Index() >= idx })
			if _, _, err := old.store.Agent(context.Background(), ReadOptions{}, "n1/after"); err != nil {
				t.Fatalf("restarted server misses a write: %v", err)
			}
		})
	}
}

func TestRestartedFollowerCatchesUpFromSnapshot(t *testing.T) {
	c := newCluster(t, 3, 0, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	l := c.leader()
	var f *testNode
	for _, s := range c.servers() {
		if s != l {
			f = s
			break
		}
	}
	c.kill(f)
	restoresBefore := f.store.st.restores.Load()
	var last uint64
	for i := range 300 {
		last, _ = mustApply(t, l.store, agentCmd(fmt.Sprintf("n1/a%03d", i), "x"))
	}
	if err := l.store.srv.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("leader snapshot: %v", err)
	}
	c.restart(f)
	waitFor(t, 15*time.Second, "follower to catch up", func() bool { return f.store.Index() >= last })
	if f.store.st.restores.Load() == restoresBefore {
		t.Fatal("follower caught up without installing a snapshot")
	}
	agents, _, err := f.store.Agents(context.Background(), ReadOptions{}, AgentFilter{})
	if err != nil || len(agents) != 300 {
		t.Fatalf("follower has %d agents (err %v), want 300", len(agents), err)
	}
}

func TestClientReplicaSurvivesServerDeath(t *testing.T) {
	c := newCluster(t, 3, 1, nil)
	cl := c.client(0).store
	idx, _ := mustApply(t, cl, agentCmd("c0/a", "x"))
	waitFor(t, 5*time.Second, "replica to see its own write", func() bool { return cl.Index() >= idx })
	// Kill the server the client follows.
	var followed *testNode
	for _, s := range c.servers() {
		if s.addr() == cl.ReplicaStatus().Server {
			followed = s
		}
	}
	if followed == nil {
		t.Fatalf("client follows %q, no such server", cl.ReplicaStatus().Server)
	}
	c.kill(followed)
	l := c.leader()
	idx2, _ := mustApply(t, l.store, agentCmd("n1/b", "x"))
	waitFor(t, 10*time.Second, "replica to converge via another server", func() bool { return cl.Index() >= idx2 })
	st := cl.ReplicaStatus()
	if st.Server == followed.addr() || !st.Ready {
		t.Fatalf("replica status after failover: %+v", st)
	}
	// Writes from the client still work, and the client sees them.
	idx3, _ := mustApply(t, cl, agentCmd("c0/c", "x"))
	agents, ridx, err := cl.Agents(context.Background(), consistent, AgentFilter{Capability: "x"})
	if err != nil || len(agents) != 3 || ridx < idx3 {
		t.Fatalf("client consistent read: %d agents at %d (err %v), want 3 at >= %d", len(agents), ridx, err, idx3)
	}
	// Secrets never reach clients.
	mustApply(t, l.store, &meshnodev1.Command{Op: &meshnodev1.Command_PutCaRecord{PutCaRecord: &meshnodev1.PutCARecordCommand{
		Record: &meshnodev1.CARecord{Key: "root", Value: []byte("secret")}}}})
	if _, _, err := cl.CARecord(context.Background(), ReadOptions{}, "root"); !errors.Is(err, ErrServerOnly) {
		t.Fatalf("client CA read: %v", err)
	}
	txn, _ := cl.st.read()
	if it, _ := txn.Get(tableCA, "id"); it.Next() != nil {
		t.Fatal("a CA record reached a client replica")
	}
	v, _, err := l.store.CARecord(context.Background(), consistent, "root")
	if err != nil || string(v) != "secret" {
		t.Fatalf("server CA read: %q %v", v, err)
	}
	// Clients may not write secrets, nor admit themselves as servers.
	_, _, err = cl.Apply(context.Background(), &meshnodev1.Command{Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{Id: "t", ExpiresUnixNano: 1 << 62}}})
	if !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("client UseToken: %v", err)
	}
	_, _, err = cl.Apply(context.Background(), &meshnodev1.Command{Op: &meshnodev1.Command_AdmitServer{AdmitServer: &meshnodev1.AdmitServerCommand{Node: cl.cfg.Name}}})
	if !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("client AdmitServer: %v", err)
	}
	if ok, _ := l.store.ServerAdmitted(context.Background(), ReadOptions{}, cl.cfg.Name); ok {
		t.Fatal("a client admitted itself as a server")
	}
}

func TestIdempotentRetryAcrossLeaderChange(t *testing.T) {
	c := newCluster(t, 3, 0, nil)
	l := c.leader()
	// The write and its retry come from one node (keys are remembered per
	// origin); the leader that committed the first dies in between.
	var other *testNode
	for _, s := range c.servers() {
		if s != l {
			other = s
			break
		}
	}
	cmd := agentCmd("n1/a", "x")
	cmd.IdempotencyKey = "retry-1"
	idx1, res1 := mustApply(t, other.store, cmd)
	c.kill(l)
	idx2, res2 := mustApply(t, other.store, cmd)
	if !res2.GetDuplicate() || idx2 != idx1 || res2.GetAgent().GetModifyIndex() != idx1 || res1.GetDuplicate() {
		t.Fatalf("retry after failover: first %v, retry %v", res1, res2)
	}
	a, _, err := other.store.Agent(context.Background(), consistent, "n1/a")
	if err != nil || a.GetModifyIndex() != idx1 {
		t.Fatalf("agent after retry: %v %v", a, err)
	}
	// Token reuse is an error callers can branch on.
	issueSigned(context.Background(), t, other.store, "tok", "", meshnodev1.JoinRole_JOIN_ROLE_CLIENT, false)
	tok := &meshnodev1.Command{Op: &meshnodev1.Command_UseToken{UseToken: &meshnodev1.UseTokenCommand{Id: "tok", ExpiresUnixNano: uint64(time.Now().Add(time.Hour).UnixNano())}}}
	mustApply(t, other.store, tok)
	if _, _, err := other.store.Apply(context.Background(), tok); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("second use of a token: %v", err)
	}
}

func TestAutopilotReplacesFailedVoter(t *testing.T) {
	c := newCluster(t, 4, 0, func(cfg *Config) { cfg.DeadServerGrace = 1500 * time.Millisecond })
	l := c.leader()
	var victim, standby *testNode
	for _, s := range l.store.localServers() {
		n := c.byName(s.Name)
		switch {
		case s.Role == RoleVoter && victim == nil:
			victim = n
		case s.Role == RoleNonVoter:
			standby = n
		}
	}
	if victim == nil || standby == nil {
		t.Fatalf("want a follower voter and a standby: %+v", l.store.localServers())
	}
	c.kill(victim)
	waitFor(t, 15*time.Second, "standby promoted and dead voter removed", func() bool {
		roles := map[string]ServerRole{}
		for _, s := range c.leader().store.localServers() {
			roles[s.Name] = s.Role
		}
		return (roles[standby.name] == RoleVoter || roles[standby.name] == RoleLeader) &&
			(roles[victim.name] == RoleNone || roles[victim.name] == "")
	})
	mustApply(t, c.leader().store, agentCmd("n1/after", "x"))
}

func TestWatchPushesFilteredChanges(t *testing.T) {
	c := newCluster(t, 1, 1, func(cfg *Config) { cfg.Voters = 1 })
	for _, n := range c.nodes {
		ctx, cancel := context.WithCancel(context.Background())
		ch := n.store.Watch(ctx, 0, WatchFilter{Capability: "pay"})
		if ev := <-ch; ev.Kind != EventSnapshot {
			t.Fatalf("%s: first event %v", n.name, ev.Kind)
		}
		id := n.name + "/w"
		mustApply(t, n.store, agentCmd(id+"-other", "other"))
		mustApply(t, n.store, agentCmd(id, "pay"))
		mustApply(t, n.store, agentCmd(id, "other")) // no longer matches: a delete
		want := []EventKind{EventPut, EventDelete}
		for _, k := range want {
			for ev := range ch {
				if ev.Kind == EventSnapshot || ev.Agent.GetId() != id {
					continue // earlier nodes' writes reaching this replica
				}
				if ev.Kind != k {
					t.Fatalf("%s: got %v %s, want %v", n.name, ev.Kind, ev.Agent.GetId(), k)
				}
				break
			}
		}
		cancel()
		for range ch {
		}
	}
}

func (c *testCluster) byName(name string) *testNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func TestNoQuorumFailsClearlyAndCloses(t *testing.T) {
	c := newCluster(t, 3, 0, nil)
	l := c.leader()
	var survivor *testNode
	for _, s := range c.servers() {
		if s != l && survivor == nil {
			survivor = s
			continue
		}
		c.kill(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, _, err := survivor.store.Apply(ctx, agentCmd("n1/x", "x"))
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("write without quorum: %v", err)
	}
	if _, _, err := survivor.store.Agents(ctx, ReadOptions{}, AgentFilter{}); err != nil {
		t.Fatalf("stale read without quorum: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- survivor.store.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs without a quorum")
	}
}
