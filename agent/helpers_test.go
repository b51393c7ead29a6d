package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent/agenttest"
)

func TestMain(m *testing.M) {
	// Agents keep their vote key and journal in a state directory; tests
	// keep theirs out of the home directory.
	stateHome, err := os.MkdirTemp("", "meshnode-agent-state-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", stateHome)

	code := m.Run()
	os.RemoveAll(stateHome)
	if code == 0 {
		if err := checkNoLeakedGoroutines(5 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkNoLeakedGoroutines fails when goroutines started by this package or
// by its gRPC connections outlive the tests, polling until they are gone.
func checkNoLeakedGoroutines(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "meshnode/agent.") || strings.Contains(g, "meshnode/agent/agenttest.") ||
				strings.Contains(g, "google.golang.org/grpc.") {
				if !strings.Contains(g, "checkNoLeakedGoroutines") {
					leaked = append(leaked, g)
				}
			}
		}
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked %d goroutines:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling for exit, not synchronisation
	}
}

// logBuffer collects an Agent's log for assertions; safe for concurrent use
// and usable after the test ends, unlike t.Log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) count(substr string) int { return strings.Count(l.String(), substr) }

// testAgent returns an agent for node with a quick, jitter-free reconnect
// schedule and a captured log. It is closed when the test ends.
func testAgent(t *testing.T, node *agenttest.Node, name string) (*Agent, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	a := &Agent{
		Name:             name,
		Socket:           node.Socket,
		Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ReconnectBackoff: Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Jitter: -1},
	}
	t.Cleanup(func() { a.Close() })
	return a, logs
}

// serve runs a.Serve until the test ends, waits until the agent is up, and
// checks that Serve returns nil once its ctx is cancelled.
func serve(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve returned %v after its ctx ended, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of its ctx ending")
		}
	})
	upCtx, upCancel := context.WithTimeout(ctx, 10*time.Second)
	defer upCancel()
	if err := a.Up(upCtx); err != nil {
		select {
		case serr := <-errc:
			t.Fatalf("Serve returned early: %v", serr)
		default:
		}
		t.Fatal(err)
	}
}

func dial(t *testing.T, node *agenttest.Node) *Client {
	t.Helper()
	c, err := Dial(context.Background(), node.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func echo(_ context.Context, r *Request) (*Response, error) {
	return &Response{Payload: bytes.ToUpper(r.Payload), ContentType: r.ContentType}, nil
}
