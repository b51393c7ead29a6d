package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentmesh/meshnode/internal/benchutil"
)

// binary is the meshnode binary built once for the whole test run.
var binary string

func TestMain(m *testing.M) {
	benchutil.ServeBaselineIfAsked()
	// Agents keep their vote key and journal in a state directory; tests
	// keep theirs out of the home directory.
	stateHome, err := os.MkdirTemp("", "meshnode-agent-state-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", stateHome)
	dir, err := os.MkdirTemp("", "meshnode-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "meshnode")
	build := exec.Command("go", "build", "-o", binary, "github.com/agentmesh/meshnode/cmd/meshnode")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build meshnode:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.RemoveAll(stateHome)
	os.Exit(code)
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is one running meshnode process.
type proc struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{}
	err    error
	socket string
	dir    string
}

// shortTempDir returns a temp dir with a short path: socket paths are capped
// at 107 bytes and t.TempDir() paths can be long.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freeUDPPort finds a UDP port that was free a moment ago on 127.0.0.1.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startNode starts `meshnode run` with args, killed at test cleanup.
func startNode(t testing.TB, dataDir string, args ...string) *proc {
	t.Helper()
	hasBind := false
	for _, a := range args {
		if a == "--bind" {
			hasBind = true
		}
	}
	if !hasBind {
		args = append(args, "--bind", "127.0.0.1:"+strconv.Itoa(freeUDPPort(t)))
	}
	return startNodeEnv(t, nil, dataDir, args...)
}

// startNodeEnv starts `meshnode run --data-dir dataDir args...` with env
// added to a clean environment, killed at test cleanup.
func startNodeEnv(t testing.TB, env []string, dataDir string, args ...string) *proc {
	t.Helper()
	p := &proc{output: &syncBuffer{}, done: make(chan struct{}), dir: dataDir, socket: filepath.Join(dataDir, "meshnode.sock")}
	full := append([]string{"run", "--data-dir", dataDir}, args...)
	p.cmd = exec.Command(binary, full...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	p.cmd.Env = append(cleanEnv(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of meshnode %v:\n%s", full, p.output.String())
		}
	})
	return p
}

// cleanEnv drops MESHNODE_* variables of the surrounding shell.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !bytes.HasPrefix([]byte(kv), []byte("MESHNODE_")) {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady polls the socket until Status answers.
func (p *proc) waitReady(t testing.TB, within time.Duration) *meshnodev1.StatusResponse {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		select {
		case <-p.done:
			t.Fatalf("meshnode exited before it was ready: %v\n%s", p.err, p.output.String())
		default:
		}
		if st, err := statusOnce(p.socket); err == nil {
			return st
		} else if time.Now().After(deadline) {
			t.Fatalf("meshnode not ready after %v: %v\n%s", within, err, p.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func statusOnce(socket string) (*meshnodev1.StatusResponse, error) {
	if _, err := os.Stat(socket); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return meshnodev1.NewNodeServiceClient(conn).Status(ctx, &meshnodev1.StatusRequest{})
}

// stop sends sig and waits for the exit code.
func (p *proc) stop(t testing.TB, sig syscall.Signal, within time.Duration) int {
	t.Helper()
	p.cmd.Process.Signal(sig)
	return p.wait(t, within)
}

func (p *proc) wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("meshnode did not exit within %v\n%s", within, p.output.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// runCLI runs a meshnode client command to completion.
func runCLI(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Env = append(cleanEnv(), env...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		t.Fatalf("meshnode %v did not finish", args)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("meshnode %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}
