package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNodeLifecycle drives the built binary through the foundation's
// acceptance: start, Status over gRPC and over Connect JSON, the CLI with
// --json, SIGTERM, exit 0, socket removed.
func TestNodeLifecycle(t *testing.T) {
	dir := shortTempDir(t)
	p := startNode(t, dir, "--name", "alpha")
	st := p.waitReady(t, 20*time.Second)
	if st.GetName() != "alpha" || st.GetRole() != "server" || st.GetVersion() == "" {
		t.Fatalf("gRPC Status = %v, want name alpha, role server and a version", st)
	}

	fi, err := os.Stat(p.socket)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o660 {
		t.Errorf("socket mode = %o, want 660", mode)
	}

	// Connect JSON over HTTP/1.1, exactly as a curl user would send it.
	client := unixHTTPClient(p.socket)
	resp, err := client.Post("http://localhost/meshnode.v1.NodeService/Status", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("JSON Status: HTTP %d: %s", resp.StatusCode, body)
	}
	var js map[string]any
	if err := json.Unmarshal(body, &js); err != nil || js["name"] != "alpha" {
		t.Fatalf("JSON Status body = %s (%v), want name alpha", body, err)
	}

	out, errOut, code := runCLI(t, nil, "status", "--json", "--socket", p.socket)
	if code != 0 {
		t.Fatalf("meshnode status --json: exit %d: %s", code, errOut)
	}
	js = nil
	if err := json.Unmarshal([]byte(out), &js); err != nil || js["name"] != "alpha" || js["role"] != "server" {
		t.Fatalf("status --json = %s (%v)", out, err)
	}
	// MESHNODE_SOCKET is honoured by client commands.
	if out, errOut, code := runCLI(t, []string{"MESHNODE_SOCKET=" + p.socket}, "status"); code != 0 || !strings.Contains(out, "alpha") {
		t.Fatalf("status via MESHNODE_SOCKET: exit %d: %s%s", code, out, errOut)
	}

	if code := p.stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0\n%s", code, p.output.String())
	}
	if _, err := os.Stat(p.socket); !os.IsNotExist(err) {
		t.Fatalf("socket still exists after exit: %v", err)
	}
}

func unixHTTPClient(socket string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// TestSecondInstanceRefused: a second node on the same data dir exits with a
// clear message and leaves the first node's socket alone.
func TestSecondInstanceRefused(t *testing.T) {
	dir := shortTempDir(t)
	first := startNode(t, dir, "--name", "one")
	first.waitReady(t, 20*time.Second)

	second := startNode(t, dir, "--name", "two")
	if code := second.wait(t, 20*time.Second); code != 1 {
		t.Fatalf("second instance exit code = %d, want 1\n%s", code, second.output.String())
	}
	if !strings.Contains(second.output.String(), "in use by another meshnode") {
		t.Fatalf("second instance message = %q, want it to say the data dir is in use", second.output.String())
	}
	if st, err := statusOnce(first.socket); err != nil || st.GetName() != "one" {
		t.Fatalf("first node no longer answers after the refused start: %v %v", st, err)
	}
}

// TestPortInUse: a second node on a taken UDP port exits 1 naming the port
// and the fix, and leaves the first node alone.
func TestPortInUse(t *testing.T) {
	dir := shortTempDir(t)
	bind := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	first := startNode(t, filepath.Join(dir, "a"), "--name", "a", "--bind", bind)
	first.waitReady(t, 30*time.Second)
	second := startNode(t, filepath.Join(dir, "b"), "--name", "b", "--bind", bind)
	if code := second.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit code = %d, want 1\n%s", code, second.output.String())
	}
	if out := second.output.String(); !strings.Contains(out, "already in use") || !strings.Contains(out, "--bind") {
		t.Fatalf("message %q does not say the port is in use and how to fix it", out)
	}
	if _, err := statusOnce(first.socket); err != nil {
		t.Fatalf("first node stopped answering: %v", err)
	}
}

// TestStaleSocketReplaced: a socket file left by a crash does not stop the
// next start.
func TestStaleSocketReplaced(t *testing.T) {
	dir := shortTempDir(t)
	p := startNode(t, dir, "--name", "crashy")
	p.waitReady(t, 20*time.Second)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	if _, err := os.Stat(p.socket); err != nil {
		t.Fatalf("expected the killed node to leave its socket behind: %v", err)
	}
	again := startNode(t, dir, "--name", "crashy")
	if st := again.waitReady(t, 20*time.Second); st.GetName() != "crashy" {
		t.Fatalf("restarted node status = %v", st)
	}
}

// TestBadInput: each bad input ends in a one-line error that names the
// problem, with exit code 2 for usage and config errors and 1 for runtime
// failures, and leaves nothing behind.
func TestBadInput(t *testing.T) {
	dir := shortTempDir(t)
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("name: x\nno_such_key: 1\n"), 0o600)
	badType := filepath.Join(dir, "badtype.yaml")
	os.WriteFile(badType, []byte("voters: many\n"), 0o600)
	notWritable := filepath.Join(dir, "file-not-dir")
	os.WriteFile(notWritable, []byte("x"), 0o600)
	longSock := "/tmp/" + strings.Repeat("s", 110) + ".sock"

	cases := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantText string
	}{
		{"unknown flag", []string{"run", "--no-such-flag"}, nil, 2, "unknown flag"},
		{"bad flag value", []string{"run", "--voters", "x"}, nil, 2, "voters"},
		{"voters out of range", []string{"run", "--data-dir", filepath.Join(dir, "v"), "--voters", "4"}, nil, 2, "voters"},
		{"bad bind", []string{"run", "--data-dir", filepath.Join(dir, "b"), "--bind", "nonsense"}, nil, 2, "bind"},
		{"socket path too long", []string{"run", "--data-dir", filepath.Join(dir, "s"), "--socket", longSock}, nil, 2, "socket"},
		{"unknown config key", []string{"run", "--config", badYAML}, nil, 2, "no_such_key"},
		{"config value of wrong type", []string{"run", "--config", badType}, nil, 2, "voters"},
		{"missing config file", []string{"run", "--config", filepath.Join(dir, "absent.yaml")}, nil, 2, "config file"},
		{"unknown env var", []string{"run"}, []string{"MESHNODE_NO_SUCH=1"}, 2, "MESHNODE_NO_SUCH"},
		{"bad env value", []string{"run"}, []string{"MESHNODE_LOG_LEVEL=loud"}, 2, "log_level"},
		{"data dir not creatable", []string{"run", "--data-dir", filepath.Join(notWritable, "sub"), "--bind", "127.0.0.1:0"}, nil, 1, "data dir"},
		{"token without join", []string{"run", "--data-dir", filepath.Join(dir, "t"), "--token", "abc"}, nil, 2, "join"},
		{"status without a node", []string{"status", "--socket", filepath.Join(dir, "no-node", "meshnode.sock")}, nil, 1, "no node socket"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, tc.env, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit code = %d, want %d; stderr: %s", code, tc.wantCode, errOut)
			}
			if !strings.Contains(errOut, tc.wantText) {
				t.Fatalf("stderr %q does not mention %q", errOut, tc.wantText)
			}
			if lines := bytes.Count([]byte(strings.TrimSpace(errOut)), []byte("\n")); lines > 0 && tc.wantCode == 2 {
				t.Fatalf("want a one-line error, got %d lines: %q", lines+1, errOut)
			}
		})
	}
	// Nothing half-written: the refused runs created no data dirs.
	for _, sub := range []string{"v", "b", "s", "t"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); !os.IsNotExist(err) {
			t.Errorf("refused start left %s behind", sub)
		}
	}
}
