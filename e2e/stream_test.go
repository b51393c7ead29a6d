package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestStreamOverSSEAndCLI: an agent on n2 streams chunks 300 ms apart;
// `curl -N` on n1's socket (Server-Sent Events) sees each chunk as it is
// sent, not all at the end; then `meshnode call --stream` on n1 loses the
// agent's node to SIGKILL mid-stream and says which chunk came last.
func TestStreamOverSSEAndCLI(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	c := newCluster(t, 2, 1)
	c.startAll()
	n1, n2 := c.nodes[0], c.nodes[1]
	n2.serveAgent("tokens", "tokens", "--stream", "5", "--delay", "300ms")
	n2.serveAgent("endless", "endless", "--stream", "100000", "--delay", "20ms")
	waitDiscoverReady(t, n1, "tokens", 1)
	waitDiscoverReady(t, n1, "endless", 1)

	curl := exec.Command("curl", "-sN", "--unix-socket", n1.socket(),
		"-H", "Accept: text/event-stream", "-H", "Content-Type: application/json",
		"-d", `{"capability":"tokens","payload":"`+base64.StdEncoding.EncodeToString([]byte("tok"))+`"}`,
		"http://localhost/meshnode.v1.InvokeService/CallStream")
	out, err := curl.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	defer curl.Wait()
	type event struct {
		at   time.Time
		line string
	}
	var events []event
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "data: ") || strings.HasPrefix(l, "event: ") {
			events = append(events, event{time.Now(), l})
		}
	}
	var chunks []string
	var firstAt, endAt time.Time
	for _, e := range events {
		var m struct {
			Chunk struct {
				Seq  string `json:"seq"`
				Data []byte `json:"data"`
			} `json:"chunk"`
			End *struct {
				AgentID string `json:"agentId"`
			} `json:"end"`
		}
		if !strings.HasPrefix(e.line, "data: ") || json.Unmarshal([]byte(strings.TrimPrefix(e.line, "data: ")), &m) != nil {
			continue
		}
		switch {
		case m.End != nil:
			endAt = e.at
			if m.End.AgentID != "n2/tokens" {
				t.Fatalf("end names agent %q, want n2/tokens", m.End.AgentID)
			}
		case m.Chunk.Seq != "":
			if firstAt.IsZero() {
				firstAt = e.at
			}
			chunks = append(chunks, m.Chunk.Seq+"="+string(m.Chunk.Data))
		}
	}
	want := []string{"1=tok 1\n", "2=tok 2\n", "3=tok 3\n", "4=tok 4\n", "5=tok 5\n"}
	if fmt.Sprint(chunks) != fmt.Sprint(want) || endAt.IsZero() {
		t.Fatalf("SSE events %v; want chunks %q then the end", events, want)
	}
	// Four 300 ms gaps: a response buffered to the end would show none.
	if gap := endAt.Sub(firstAt); gap < 900*time.Millisecond {
		t.Fatalf("the first chunk came only %v before the end: the events were not streamed", gap)
	}

	cli := exec.Command(binary, "call", "endless", "--stream", "--data", `"x"`, "--socket", n1.socket(), "--timeout", "2m")
	cli.Env = cleanEnv()
	var cliOut, cliErr bytes.Buffer
	cli.Stdout, cli.Stderr = &cliOut, &cliErr
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the CLI prints 20 chunks", func() bool { return strings.Count(cliOut.String(), "\n") >= 20 })
	n2.kill()
	err = cli.Wait()
	printed := strings.Count(cliOut.String(), "\n")
	if err == nil {
		t.Fatalf("meshnode call --stream exited 0 although the agent's node was killed; stderr: %s", cliErr.String())
	}
	var last int
	if _, serr := fmt.Sscanf(cliErr.String(), "stream broke after chunk %d", &last); serr != nil || last < 20 || last != printed {
		t.Fatalf("stderr %q: want \"stream broke after chunk %d\"", cliErr.String(), printed)
	}
	t.Logf("after SIGKILL of n2: %s", strings.TrimSpace(cliErr.String()))
}
