package consensus

import (
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func agentRecord(id string) *meshnodev1.RaftStateRecord {
	return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Agent{Agent: &meshnodev1.Agent{Id: id, Node: "n1"}}}
}

// TestReplicaNeverAppliesOutOfOrder feeds a replica a change stream with a
// repeat, a gap and a secret record.
func TestReplicaNeverAppliesOutOfOrder(t *testing.T) {
	s := &Store{st: testState(64), cfg: Config{}.withDefaults()}
	r := &replica{s: s}
	var snap *meshnodev1.RaftSnapshotHeader
	var recs []*meshnodev1.RaftStateRecord
	feed := func(m *meshnodev1.SubscribeResponse) error {
		_, err := r.handle(m, &snap, &recs)
		return err
	}
	event := func(idx, prev uint64, rec *meshnodev1.RaftStateRecord) *meshnodev1.SubscribeResponse {
		return &meshnodev1.SubscribeResponse{Kind: &meshnodev1.SubscribeResponse_Event{Event: &meshnodev1.RaftStateEvent{
			Index: idx, PrevIndex: prev, Changes: []*meshnodev1.RaftStateChange{{Record: rec}}}}}
	}
	if err := feed(event(5, 4, agentRecord("early"))); err == nil {
		t.Fatal("event applied before any snapshot")
	}
	steps := []*meshnodev1.SubscribeResponse{
		{Kind: &meshnodev1.SubscribeResponse_SnapshotBegin{SnapshotBegin: &meshnodev1.RaftSnapshotHeader{Version: SnapshotVersion, Index: 10, Records: 1}}},
		{Kind: &meshnodev1.SubscribeResponse_SnapshotRecord{SnapshotRecord: agentRecord("a")}},
		{Kind: &meshnodev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: 10}},
		event(12, 10, agentRecord("b")),
		event(12, 10, agentRecord("b")), // repeated after a resume: skipped
	}
	for i, m := range steps {
		if err := feed(m); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if s.st.index() != 12 || !r.ready.Load() {
		t.Fatalf("replica at %d ready=%v, want 12", s.st.index(), r.ready.Load())
	}
	if err := feed(event(20, 15, agentRecord("c"))); err == nil {
		t.Fatal("applied an event after a gap")
	}
	secret := &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_CaRecord{CaRecord: &meshnodev1.CARecord{Key: "k"}}}
	if err := feed(event(13, 12, secret)); err == nil {
		t.Fatal("a client replica accepted a CA record")
	}
	if s.st.index() != 12 {
		t.Fatalf("a refused event moved the replica to %d", s.st.index())
	}
}
