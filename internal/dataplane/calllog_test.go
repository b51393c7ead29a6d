package dataplane

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// logLines decodes a JSON handler's output, one map per line.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// Every call leaves one debug line at the caller's node and one at the
// callee's, naming both agents, the capability, the outcome, the latency
// and the attempt; at info level nothing is written.
func TestOneDebugLinePerCall(t *testing.T) {
	var buf bytes.Buffer
	l := &fakeLocal{owners: map[string]hub.Owner{"n1/a": me}}
	p := newPlane(t, l, "n1/b")
	p.cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	if _, err := p.Call(context.Background(), me, &meshnodev1.CallRequest{Capability: "cap", Payload: []byte("hi"), CallerAgentId: "a"}); err != nil {
		t.Fatal(err)
	}
	later := timestamppb.New(time.Now().Add(time.Minute))
	if _, err := p.Receive(context.Background(), "n0", &meshnodev1.ForwardCallRequest{TargetAgentId: "n1/b",
		Delivery: &meshnodev1.Delivery{Capability: "cap", CallerAgentId: "n0/x", Attempt: 2},
		Routing:  &meshnodev1.RoutingMetadata{Chain: []string{"n0/x", "n1/b"}, Hops: 1, Deadline: later}}); err != nil {
		t.Fatal(err)
	}
	lines := logLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per side:\n%s", len(lines), buf.String())
	}
	want := []map[string]any{
		{"msg": "call", "level": "DEBUG", "side": "caller", "caller_agent": "n1/a", "callee_agent": "n1/b", "capability": "cap", "outcome": "OK", "attempt": 1.0},
		{"msg": "call", "level": "DEBUG", "side": "callee", "caller_agent": "n0/x", "callee_agent": "n1/b", "capability": "cap", "outcome": "OK", "attempt": 2.0, "from_node": "n0"},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
		if _, ok := lines[i]["latency"]; !ok {
			t.Errorf("line %d has no latency: %v", i, lines[i])
		}
	}

	// A failed call says how it failed: n2, the agent's node, has no address.
	buf.Reset()
	p.cfg.Catalog = fakeCatalog{agent: "n2/b", node: "n2"}
	if _, err := p.Call(context.Background(), me, &meshnodev1.CallRequest{Capability: "cap"}); err == nil {
		t.Fatal("a call to a node with no address succeeded")
	}
	if lines := logLines(t, &buf); len(lines) != 1 || lines[0]["outcome"] != "Unavailable" || lines[0]["callee_agent"] != "n2/b" || lines[0]["caller_agent"] != "" {
		t.Fatalf("a failed call made for no agent logged %v", lines)
	}

	buf.Reset()
	p.cfg.Catalog = fakeCatalog{agent: "n1/b", node: "n1"}
	p.cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if _, err := p.Call(context.Background(), me, &meshnodev1.CallRequest{Capability: "cap"}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatalf("at info level a call logged %q", buf.String())
	}
}
