package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// walkthroughMarker precedes the README's walkthrough block.
const walkthroughMarker = "<!-- walkthrough: e2e/readme_test.go runs the next block -->"

// TestREADMEWalkthrough runs the README's walkthrough block word for word
// with bash, from the repository's root, with meshnode on PATH and only its
// `D=$(mktemp -d)` replaced by the test's temp dir. Then it checks that
// every output line the README shows (the "#   " comment lines after a
// command) was printed, in order; "..." in them stands for anything.
func TestREADMEWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: the walkthrough runs the Python agent (scripts/install-deps.sh installs it)")
	}
	for _, port := range []string{"7001", "7002", "7003"} {
		c, err := net.ListenPacket("udp", "127.0.0.1:"+port)
		if err != nil {
			t.Skipf("the walkthrough binds 127.0.0.1:7001-7003 and UDP port %s is taken: %v", port, err)
		}
		c.Close()
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := walkthroughBlock(t, string(readme))
	dir := shortTempDir(t)
	const mktemp = "D=$(mktemp -d)"
	if strings.Count(block, mktemp) != 1 {
		t.Fatalf("the walkthrough block should set D with %q exactly once:\n%s", mktemp, block)
	}
	script := strings.Replace(block, mktemp, "D="+dir, 1)

	out, err := os.Create(filepath.Join(dir, "walkthrough.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// bash -e: a failing step fails the walkthrough, as it would stop a reader.
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir = repo
	cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"))
	// A file, not a pipe: the background processes keep their standard
	// output after bash exits, and Wait must not wait for them.
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so cleanup reaches everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopGroup(cmd.Process.Pid) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		t.Errorf("the walkthrough did not finish within 3m")
	}
	printed, _ := os.ReadFile(out.Name())
	defer func() {
		if t.Failed() {
			t.Logf("walkthrough output:\n%s", printed)
			logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", filepath.Base(l), b)
			}
		}
	}()
	if err != nil {
		t.Fatalf("the walkthrough failed: %v", err)
	}
	if t.Failed() {
		return
	}
	matchPrinted(t, expectedLines(block), string(printed))
	// The README shows one leader; matchPrinted accepts leader or voter in
	// each row, since an election may move leadership to n2 or n3.
	if n := regexp.MustCompile(`(?m)^n[123]\s+127\.0\.0\.1:700[123]\s+server\s+alive\s+leader\s`).FindAllString(string(printed), -1); len(n) != 1 {
		t.Errorf("members should show exactly one leader, got %d", len(n))
	}
}

// walkthroughBlock returns the fenced block that follows the marker.
func walkthroughBlock(t *testing.T, readme string) string {
	t.Helper()
	_, after, ok := strings.Cut(readme, walkthroughMarker)
	if !ok {
		t.Fatalf("README.md has no %q", walkthroughMarker)
	}
	after = strings.TrimLeft(after, "\n")
	if !strings.HasPrefix(after, "```sh\n") {
		t.Fatalf("the walkthrough marker should be followed by a ```sh block")
	}
	body, _, ok := strings.Cut(strings.TrimPrefix(after, "```sh\n"), "\n```")
	if !ok {
		t.Fatal("the walkthrough block is not closed")
	}
	return body
}

// expectedLines turns the block's "#   " lines into patterns.
func expectedLines(block string) []*regexp.Regexp {
	var out []*regexp.Regexp
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "#   ")
		if !ok {
			continue
		}
		var parts []string
		for _, field := range strings.Fields(line) {
			switch field {
			case "leader", "voter":
				parts = append(parts, "(leader|voter)")
			default:
				parts = append(parts, strings.ReplaceAll(regexp.QuoteMeta(field), `\.\.\.`, `.*`))
			}
		}
		out = append(out, regexp.MustCompile(`^\s*`+strings.Join(parts, `\s+`)+`\s*$`))
	}
	return out
}

// matchPrinted checks that each pattern matches a printed line, in order.
func matchPrinted(t *testing.T, want []*regexp.Regexp, printed string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("the walkthrough block shows no output lines to check")
	}
	lines := strings.Split(printed, "\n")
	i := 0
	for _, re := range want {
		for i < len(lines) && !re.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			t.Errorf("the README shows a line matching %s, but it was not printed (in that order)", re)
			return
		}
		i++
	}
}

// stopGroup asks every process of the group to stop, then kills what is left.
func stopGroup(pgid int) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}
