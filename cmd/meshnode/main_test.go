package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// runArgs runs the CLI in-process and returns its exit status and output.
func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestExitStatusOfUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error message
	}{
		{nil, "needs a command"},
		{[]string{"foo"}, `unknown command "foo"`},
		{[]string{"versio"}, "did you mean version"},
		{[]string{"call"}, "accepts 1 arg"},
		{[]string{"discover"}, "accepts 1 arg"},
		{[]string{"status", "extra"}, "unknown command"},
		{[]string{"token"}, "meshnode token needs a command: create"},
		{[]string{"token", "show"}, `unknown command "show" for meshnode token`},
		{[]string{"policy"}, "meshnode policy needs a command"},
		{[]string{"policy", "frobnicate", "x"}, `unknown command "frobnicate"`},
		{[]string{"policy", "delete"}, "accepts 1 arg"},
		{[]string{"quorum"}, "meshnode quorum needs a command"},
		{[]string{"quorum", "foo"}, `unknown command "foo" for meshnode quorum`},
		{[]string{"node"}, "meshnode node needs a command"},
		{[]string{"node", "foo"}, `unknown command "foo" for meshnode node`},
		{[]string{"node", "revoke"}, "accepts 1 arg"},
		{[]string{"pki"}, "meshnode pki needs a command"},
		{[]string{"status", "--no-such-flag"}, "unknown flag"},
		{[]string{"run", "--voters", "4"}, "voters"},
		{[]string{"wait", "--voters", "-1"}, "--voters"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runArgs(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit status %d, want %d (usage); stderr: %s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not say %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("a usage error printed to standard output: %q", stdout)
			}
		})
	}
}

func TestNoNodeIsARuntimeError(t *testing.T) {
	sock := t.TempDir() + "/none.sock"
	code, _, stderr := runArgs(t, "status", "--wait", "0", "--socket", sock)
	if code != exitRuntime || !strings.Contains(stderr, "no node socket at "+sock) || !strings.Contains(stderr, "meshnode run") {
		t.Fatalf("status without a node: exit %d, %q", code, stderr)
	}
	code, _, stderr = runArgs(t, "status", "--wait", "300ms", "--socket", sock)
	if code != exitRuntime || !strings.Contains(stderr, "after waiting 300ms") {
		t.Fatalf("status --wait 300ms without a node: exit %d, %q", code, stderr)
	}
	// With the default --wait, a socket whose data dir shows no node
	// starting fails after a second, not after the whole wait.
	start := time.Now()
	code, _, stderr = runArgs(t, "status", "--socket", t.TempDir()+"/absent/meshnode.sock")
	if code != exitRuntime || !strings.Contains(stderr, "no node socket") || time.Since(start) > 10*time.Second {
		t.Fatalf("status without a node, default --wait: exit %d after %v: %q", code, time.Since(start), stderr)
	}
}

func TestNoNodeStarting(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "LOCK")
	for _, tc := range []struct {
		name string
		lock string // "" = no LOCK file
		want bool
	}{
		{"a socket outside a data dir", "", false},
		{"a released lock", "\n", true},
		{"a lock held by a live process", strconv.Itoa(os.Getpid()) + "\n", false},
		{"a lock left by a dead process", "2147483646\n", true},
	} {
		os.Remove(lock)
		if tc.lock != "" {
			os.WriteFile(lock, []byte(tc.lock), 0o600)
		}
		if got := noNodeStarting(dir); got != tc.want {
			t.Errorf("%s: noNodeStarting = %v, want %v", tc.name, got, tc.want)
		}
	}
	if !noNodeStarting(filepath.Join(dir, "absent")) {
		t.Error("a data dir that does not exist: no node is starting there")
	}
}

// Every command a user can run shows examples in its --help, as the README
// promises.
func TestEveryCommandHasExamples(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no examples in its --help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}
