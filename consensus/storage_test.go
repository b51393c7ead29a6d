package consensus

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// failingLogs makes StoreLogs fail once fail is set, like a full disk.
type failingLogs struct {
	raft.LogStore
	fail *atomic.Bool
}

func (f failingLogs) StoreLog(l *raft.Log) error { return f.StoreLogs([]*raft.Log{l}) }

func (f failingLogs) StoreLogs(ls []*raft.Log) error {
	if f.fail.Load() {
		return errors.New("write raft.db: no space left on device")
	}
	return f.LogStore.StoreLogs(ls)
}

func TestStorageFailureStopsAcknowledging(t *testing.T) {
	var fail atomic.Bool
	cfg := fastConfig(t, "s0", true)
	cfg.Bootstrap, cfg.Voters = true, 1
	c := &testCluster{t: t}
	n := &testNode{name: cfg.Name, cfg: cfg, ep: newTestEndpoint(t, cfg.Name)}
	s, err := New(cfg, NetworkFromTransport(n.ep))
	if err != nil {
		t.Fatal(err)
	}
	s.wrapLogStore = func(l raft.LogStore) raft.LogStore { return failingLogs{LogStore: l, fail: &fail} }
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.store = s
	c.nodes = append(c.nodes, n)
	t.Cleanup(c.close)
	c.leader()
	idx, _ := mustApply(t, s, agentCmd("n1/ok", "x"))
	fail.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _, err = s.Apply(ctx, agentCmd("n1/lost", "x"))
	if err == nil {
		t.Fatal("a write was acknowledged although the log could not be written")
	}
	if !errors.Is(err, ErrStorage) && !errors.Is(err, ErrNoLeader) {
		t.Fatalf("error does not say what failed: %v", err)
	}
	t.Logf("write on a failing disk: %v", err)
	if a, _, err := s.Agent(context.Background(), ReadOptions{}, "n1/ok"); err != nil || a.GetModifyIndex() != idx {
		t.Fatalf("acknowledged write lost: %v %v", a, err)
	}
	if _, _, err := s.Agent(context.Background(), ReadOptions{}, "n1/lost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unacknowledged write visible: %v", err)
	}
}
