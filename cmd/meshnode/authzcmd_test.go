package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad policy file is refused before anything is sent, naming the file,
// line and field; a good one is summarised by --dry-run.
func TestAuthzApplyValidatesTheFileLocally(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("rbac.yaml", "mode: deny\nbindings:\n  - agent: a\n    roles: [r]\ncall_rules:\n  - from_role: r\n    to_capability: x\n    action: alow\n")
	code, _, stderr := runArgs(t, "authz", "apply", "-f", bad, "--socket", filepath.Join(dir, "none.sock"), "--wait", "0")
	if code != exitUsage || !strings.Contains(stderr, "rbac.yaml:8: call_rules[0].action") || !strings.Contains(stderr, "nothing was applied") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	good := write("ok.yaml", "mode: deny\nbindings:\n  - agent: a\n    roles: [r]\ncall_rules:\n  - from_role: r\n    to_capability: x\n    action: allow\n")
	code, stdout, stderr := runArgs(t, "authz", "apply", "-f", good, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "ok.yaml is valid: mode deny, 1 bindings, 1 call rules, 0 serve rules") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, args := range [][]string{{"authz", "apply"}, {"authz", "check", "--to", "x"}, {"authz", "check", "--from", "a", "--to", "x"}} {
		if code, _, stderr := runArgs(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
	}
}
