package consensus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// decisionStore is a store over a bare state: Decisions reads it as it
// reads a server's, without Raft.
func decisionStore() *Store { return &Store{st: testState(64)} }

func putDecisionCmd(id, status string) *meshnodev1.Command {
	return &meshnodev1.Command{Version: CommandVersion, Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{
		Decision: &meshnodev1.DecisionRecord{Id: id, Status: status, Decision: []byte(id)},
	}}}
}

// fillDecisions writes n decisions, several per log entry (ties in create
// index), with random statuses, and some pending ones decided later (their
// create index stays). It returns the final status of each id.
func fillDecisions(t *testing.T, s *Store, r *rand.Rand, n int) map[string]string {
	t.Helper()
	statuses := []string{DecisionPending, "approved", "rejected"}
	want := map[string]string{}
	index := uint64(1)
	for i := 0; i < n; {
		var batch []*meshnodev1.Command
		for k := 1 + r.IntN(3); k > 0 && i < n; k-- {
			id := fmt.Sprintf("p%03d", r.IntN(1000)*1000+i)
			want[id] = statuses[r.IntN(len(statuses))]
			batch = append(batch, putDecisionCmd(id, want[id]))
			i++
		}
		s.st.applyBatch(index, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: stamp(batch)})
		index++
	}
	for id, st := range want {
		if st == DecisionPending && r.IntN(2) == 0 {
			want[id] = "approved"
			s.st.applyBatch(index, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow,
				Commands: stamp([]*meshnodev1.Command{putDecisionCmd(id, "approved")})})
			index++
		}
	}
	return want
}

// pageAll reads every page of f and fails on a record seen twice or out of
// newest-first order, or on a page over the limit.
func pageAll(t *testing.T, s *Store, f DecisionFilter, limit int) []*meshnodev1.DecisionRecord {
	t.Helper()
	var all []*meshnodev1.DecisionRecord
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			t.Fatal("paging does not end")
		}
		recs, next, _, err := s.Decisions(context.Background(), ReadOptions{}, f)
		if err != nil {
			t.Fatalf("Decisions(%+v): %v", f, err)
		}
		if len(recs) > limit || (next != "" && len(recs) != limit) {
			t.Fatalf("page of %d records (next %q), limit %d", len(recs), next, limit)
		}
		for _, r := range recs {
			if seen[r.GetId()] {
				t.Fatalf("decision %s returned twice", r.GetId())
			}
			seen[r.GetId()] = true
			if n := len(all); n > 0 {
				p := all[n-1]
				if p.GetCreateIndex() < r.GetCreateIndex() || (p.GetCreateIndex() == r.GetCreateIndex() && p.GetId() < r.GetId()) {
					t.Fatalf("%s (created at %d) after %s (created at %d): not newest first", r.GetId(), r.GetCreateIndex(), p.GetId(), p.GetCreateIndex())
				}
			}
			all = append(all, r)
		}
		if next == "" {
			return all
		}
		f.PageToken = next
	}
}

func TestDecisionPagesReturnEveryRecordOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	s := decisionStore()
	want := fillDecisions(t, s, r, 257)
	for _, status := range []string{"", DecisionPending, "approved", "rejected", "unknown"} {
		for _, limit := range []int{1, 2, 7, 100, 257, 1000} {
			got := pageAll(t, s, DecisionFilter{Status: status, Limit: limit}, limit)
			n := 0
			for _, st := range want {
				if status == "" || st == status {
					n++
				}
			}
			if len(got) != n {
				t.Fatalf("status %q limit %d: %d records, want %d", status, limit, len(got), n)
			}
			for _, d := range got {
				if want[d.GetId()] != d.GetStatus() || (status != "" && d.GetStatus() != status) {
					t.Fatalf("status %q: record %s in status %s, want %s", status, d.GetId(), d.GetStatus(), want[d.GetId()])
				}
			}
		}
	}
}

func TestDecisionPagesMatch(t *testing.T) {
	s := decisionStore()
	want := fillDecisions(t, s, rand.New(rand.NewPCG(1, 2)), 120)
	calls := 0
	even := func(d *meshnodev1.DecisionRecord) bool {
		calls++
		return strings.HasSuffix(d.GetId(), "0") || strings.HasSuffix(d.GetId(), "2")
	}
	got := pageAll(t, s, DecisionFilter{Match: even, Limit: 5}, 5)
	n := 0
	for id := range want {
		if strings.HasSuffix(id, "0") || strings.HasSuffix(id, "2") {
			n++
		}
	}
	if len(got) != n {
		t.Fatalf("%d records match, want %d", len(got), n)
	}
	// A page visits its own candidates and the look-ahead to the next
	// match, never the pages before it (an offset would revisit them all).
	if calls > 2*len(want) {
		t.Fatalf("Match called %d times for %d records", calls, len(want))
	}
}

func TestDecisionPagesLimitBounds(t *testing.T) {
	s := decisionStore()
	var batch []*meshnodev1.Command
	for i := range MaxDecisionLimit + 10 {
		batch = append(batch, putDecisionCmd(fmt.Sprintf("d%05d", i), "approved"))
	}
	s.st.applyBatch(1, &meshnodev1.CommandBatch{Version: CommandVersion, TimeUnixNano: testNow, Commands: stamp(batch)})
	for _, tc := range []struct{ limit, want int }{
		{0, DefaultDecisionLimit}, {-5, DefaultDecisionLimit}, {1, 1}, {MaxDecisionLimit, MaxDecisionLimit}, {MaxDecisionLimit + 1, MaxDecisionLimit},
	} {
		recs, next, _, err := s.Decisions(context.Background(), ReadOptions{}, DecisionFilter{Limit: tc.limit})
		if err != nil || len(recs) != tc.want || next == "" {
			t.Fatalf("limit %d: %d records, next %q, %v; want %d and a next page", tc.limit, len(recs), next, err, tc.want)
		}
		// Ties in create index are ordered by id, descending.
		if recs[0].GetId() != fmt.Sprintf("d%05d", MaxDecisionLimit+9) {
			t.Fatalf("limit %d: first record %s", tc.limit, recs[0].GetId())
		}
	}
	// The last page has no next token.
	recs, next, _, err := s.Decisions(context.Background(), ReadOptions{}, DecisionFilter{Limit: MaxDecisionLimit + 10})
	if err != nil || len(recs) != MaxDecisionLimit || next == "" {
		t.Fatalf("capped page: %d, %q, %v", len(recs), next, err)
	}
	recs, next, _, err = s.Decisions(context.Background(), ReadOptions{}, DecisionFilter{Limit: 10, PageToken: next})
	if err != nil || len(recs) != 10 || next != "" {
		t.Fatalf("last page: %d records, next %q, %v; want 10 and no next", len(recs), next, err)
	}
}

func TestDecisionPageTokenSurvivesWrites(t *testing.T) {
	s := decisionStore()
	for i := range 6 {
		applyOne(t, s.st, uint64(i+1), putDecisionCmd(fmt.Sprintf("p%d", i), DecisionPending))
	}
	first, next, _, err := s.Decisions(context.Background(), ReadOptions{}, DecisionFilter{Status: DecisionPending, Limit: 3})
	if err != nil || len(first) != 3 || first[0].GetId() != "p5" {
		t.Fatalf("first page: %v %q %v", first, next, err)
	}
	// A newer decision, and the page's last record decided meanwhile: the
	// next page still starts right after p3.
	applyOne(t, s.st, 10, putDecisionCmd("p9", DecisionPending))
	applyOne(t, s.st, 11, putDecisionCmd("p3", "approved"))
	rest, next, _, err := s.Decisions(context.Background(), ReadOptions{}, DecisionFilter{Status: DecisionPending, Limit: 3, PageToken: next})
	if err != nil || next != "" || len(rest) != 3 || rest[0].GetId() != "p2" || rest[2].GetId() != "p0" {
		t.Fatalf("second page: %v %q %v", rest, next, err)
	}
}

func TestDecisionPageTokenRefusesForeignTokens(t *testing.T) {
	s := decisionStore()
	for _, tok := range []string{"100", "!!", "AAAA", encodeDecisionToken(1, "")[:4] + "=", "AAAAAAAAAAA", encodeDecisionToken(3, "x") + "x"} {
		_, _, _, err := s.Decisions(context.Background(), ReadOptions{}, DecisionFilter{PageToken: tok})
		if !errors.Is(err, ErrInvalidPageToken) {
			t.Errorf("token %q: %v, want ErrInvalidPageToken", tok, err)
		}
	}
	if p, ok, err := decodeDecisionToken(encodeDecisionToken(42, "p/1")); err != nil || !ok || p.create != 42 || p.id != "p/1" {
		t.Fatalf("round trip: %+v %v %v", p, ok, err)
	}
}
