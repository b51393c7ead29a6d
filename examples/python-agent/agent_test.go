// Package pythonagent tests examples/python-agent/agent.py against
// agent/agenttest, which serves Connect JSON through vanguard the way a real
// node does. The tests skip when python3 is not installed.
package pythonagent

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/agent/agenttest"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func python(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	return py
}

func pyCmd(py string, args ...string) *exec.Cmd {
	cmd := exec.Command(py, append([]string{"agent.py"}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	return cmd
}

type answer struct {
	Echo, Agent, Node, Lang string
}

func TestPythonAgentServesAndReconnects(t *testing.T) {
	py := python(t)
	node := agenttest.NewNode(t)
	logs := &syncBuffer{}
	cmd := pyCmd(py, "--socket", node.Socket, "--name", "py-echo", "--capability", "demo.echo")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx, "py-echo"); err != nil {
		t.Fatalf("%v; agent.py output:\n%s", err, logs)
	}

	c, err := agent.Dial(ctx, node.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call := func(payload string) answer {
		t.Helper()
		res, err := c.Call(ctx, "demo.echo", []byte(payload), agent.WithContentType("application/json"))
		if err != nil {
			t.Fatalf("call: %v; agent.py output:\n%s", err, logs)
		}
		var a answer
		if err := json.Unmarshal(res.Payload, &a); err != nil {
			t.Fatalf("answer %q: %v", res.Payload, err)
		}
		return a
	}
	if got, want := call(`"hello"`), (answer{"HELLO", "test-node/py-echo", "test-node", "python"}); got != want {
		t.Errorf("answer = %+v, want %+v", got, want)
	}
	big := strings.Repeat("x", 1<<20) // 1 MiB: many HTTP chunks, base64 in JSON
	if got := call(`"` + big + `"`); got.Echo != strings.ToUpper(big) {
		t.Errorf("1 MiB echo came back as %d bytes", len(got.Echo))
	}

	rr, err := node.Deliver(ctx, "py-echo", &meshnodev1.Delivery{
		Capability: "demo.echo", Deadline: timestamppb.New(time.Now().Add(-time.Second)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if codes.Code(rr.GetError().GetCode()) != codes.DeadlineExceeded {
		t.Errorf("expired delivery answered %v, want DeadlineExceeded", rr)
	}

	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := node.WaitReady(ctx, "py-echo"); err != nil {
		t.Fatalf("after restart: %v; agent.py output:\n%s", err, logs)
	}
	if got := call(`"again"`); got.Echo != "AGAIN" {
		t.Errorf("after restart: answer %+v", got)
	}
	if n := len(node.Registrations()); n != 2 {
		t.Errorf("%d registrations, want 2 (before and after the restart)", n)
	}
	if !strings.Contains(logs.String(), "reconnecting, attempt 1") {
		t.Errorf("the reconnect was not logged:\n%s", logs)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("agent.py exited with %v after SIGTERM, want 0; output:\n%s", err, logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent.py did not exit after SIGTERM")
	}
	if _, ok := node.Agent("py-echo"); ok {
		t.Error("agent.py did not deregister on SIGTERM")
	}
}

func TestPythonCallMode(t *testing.T) {
	py := python(t)
	node := agenttest.NewNode(t)
	a := &agent.Agent{Name: "go-side", Socket: node.Socket}
	defer a.Close()
	a.Handle(agent.Capability{Name: "go.reverse"}, func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
		if r.ContentType != "application/json" || r.Deadline.IsZero() {
			return nil, agent.Errorf(codes.InvalidArgument, "content type %q, deadline %v", r.ContentType, r.Deadline)
		}
		b := []byte(strings.Clone(string(r.Payload)))
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return &agent.Response{Payload: b}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ctx) }()
	defer func() { cancel(); <-errc }()
	if err := a.Up(ctx); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	cmd := pyCmd(py, "--socket", node.Socket, "--call", "go.reverse", "--data", `[1,2]`)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("agent.py --call: %v\n%s", err, errOut.String())
	}
	if out.String() != "]2,1[\n" || !strings.Contains(errOut.String(), "answered by test-node/go-side on node test-node") {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}

	out.Reset()
	errOut.Reset()
	cmd = pyCmd(py, "--socket", node.Socket, "--call", "no.such", "--data", "1")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err == nil || !strings.Contains(errOut.String(), "not_found") {
		t.Errorf("calling an unknown capability: %v, stderr %q; want exit 1 and not_found", err, errOut.String())
	}
}
