package tasks

import (
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tasks.db")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func newTask(id string, digest string) *meshnodev1.Task {
	return &meshnodev1.Task{Id: id, Capability: "work", AgentId: "n1/a", Digest: []byte(digest), Deadline: timestamppb.New(t0.Add(time.Hour))}
}

func artifact(name, data string) *meshnodev1.TaskEvent {
	return &meshnodev1.TaskEvent{Event: &meshnodev1.TaskEvent_Artifact{Artifact: &meshnodev1.TaskArtifact{Name: name, Data: []byte(data)}}}
}

func TestStoreReopenKeepsEvents(t *testing.T) {
	s, path := openTemp(t)
	if _, _, err := s.Create(newTask("n1/x", "d"), t0); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, _, err := s.Append("n1/x", artifact("a", string(rune('a'+i))), t0); err != nil {
			t.Fatal(err)
		}
	}
	before, _, err := s.Events("n1/x", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	after, task, err := s2.Events("n1/x", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 6 || task.GetLastSeq() != 6 {
		t.Fatalf("after reopen: %d events, last_seq %d; want 6 and 6", len(after), task.GetLastSeq())
	}
	for i := range after {
		if !proto.Equal(before[i], after[i]) || after[i].GetSeq() != uint64(i+1) {
			t.Fatalf("event %d changed across reopen: %v then %v", i, before[i], after[i])
		}
	}
}

func TestStoreCreateIdempotence(t *testing.T) {
	s, _ := openTemp(t)
	if _, existing, err := s.Create(newTask("n1/k", "one"), t0); err != nil || existing {
		t.Fatalf("first create: existing=%v err=%v", existing, err)
	}
	got, existing, err := s.Create(newTask("n1/k", "one"), t0)
	if err != nil || !existing || got.GetLastSeq() != 1 {
		t.Fatalf("same digest: existing=%v last_seq=%d err=%v; want the existing task", existing, got.GetLastSeq(), err)
	}
	if _, _, err := s.Create(newTask("n1/k", "two"), t0); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("other digest: %v; want AlreadyExists", err)
	}
}

func TestStoreEventsRangeAndFinal(t *testing.T) {
	s, _ := openTemp(t)
	s.Create(newTask("n1/r", "d"), t0)
	s.Append("n1/r", artifact("a", "1"), t0)
	if _, _, err := s.Events("n1/r", 3, 10); status.Code(err) != codes.OutOfRange {
		t.Fatalf("after_seq 3 of 2: %v; want OutOfRange", err)
	}
	if _, _, err := s.Events("n1/none", 0, 10); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown task: %v; want NotFound", err)
	}
	evs, _, err := s.Events("n1/r", 1, 10)
	if err != nil || len(evs) != 1 || evs[0].GetSeq() != 2 {
		t.Fatalf("after 1: %v %v; want exactly event 2", evs, err)
	}
	s.Append("n1/r", statusEvent(meshnodev1.TaskState_TASK_STATE_COMPLETED, "done"), t0)
	if _, _, err := s.Append("n1/r", artifact("late", "x"), t0); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("append after the end: %v; want FailedPrecondition", err)
	}
}

func TestStoreSweep(t *testing.T) {
	s, _ := openTemp(t)
	s.Create(newTask("n1/old", "d"), t0)
	s.Append("n1/old", statusEvent(meshnodev1.TaskState_TASK_STATE_COMPLETED, "done"), t0)
	s.Create(newTask("n1/running", "d"), t0)
	s.Create(newTask("n1/recent", "d"), t0)
	s.Append("n1/recent", statusEvent(meshnodev1.TaskState_TASK_STATE_FAILED, "x"), t0.Add(2*time.Hour))
	n, err := s.Sweep(t0.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("swept %d (%v); want 1", n, err)
	}
	if _, err := s.Get("n1/old"); status.Code(err) != codes.NotFound {
		t.Fatalf("swept task still readable: %v", err)
	}
	for _, id := range []string{"n1/running", "n1/recent"} {
		if _, err := s.Get(id); err != nil {
			t.Fatalf("%s was swept: %v", id, err)
		}
	}
}
