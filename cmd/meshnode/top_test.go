package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentmesh/meshnode/internal/traffic"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func testMatrix(n int) *matrix {
	m := &matrix{resp: &meshnodev1.TrafficResponse{Nodes: []string{"n1", "n2"}, UnreachableNodes: []string{"n3"}}}
	for i := range n {
		r := traffic.Reported{Edge: traffic.Edge{Key: traffic.Key{Caller: fmt.Sprintf("node-%d/a-rather-long-caller-name", i),
			Callee: fmt.Sprintf("n2/callee-%d", i), Capability: "inventory.lookup.by-sku"}}}
		st := &r.Windows[0]
		st.Span, st.Covered, st.Requests, st.Errors = 10*time.Second, 10*time.Second, uint64(10*(i+1)), uint64(i%3)
		st.Buckets[3+i%5] = st.Requests
		m.edges = append(m.edges, r)
	}
	return m
}

// A frame fits 80×24 however many pairs and however long their names,
// says how many pairs it left out, and sorts as asked.
func TestTopFrameFits80x24(t *testing.T) {
	v := &topView{width: 80, height: 24, sort: "rate"}
	frame := v.render(testMatrix(40))
	lines := strings.Split(strings.TrimSuffix(frame, "\n"), "\n")
	if len(lines) > 24 {
		t.Errorf("%d lines, want at most 24:\n%s", len(lines), frame)
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("line of %d columns, want at most 80: %q", n, l)
		}
	}
	if !strings.Contains(frame, "(19 more)") || !strings.Contains(frame, "down: n3") {
		t.Errorf("frame does not say how many pairs it left out, or which node is down:\n%s", frame)
	}
	// By rate, the busiest (the last made, 400 calls) comes first.
	if !strings.Contains(lines[2], "callee-39") {
		t.Errorf("first row %q, want the busiest pair (callee-39)", lines[2])
	}
	v.sort = "name"
	if lines = strings.Split(v.render(testMatrix(3)), "\n"); !strings.Contains(lines[2], "callee-0") {
		t.Errorf("by name, first row %q, want node-0's", lines[2])
	}
}
