package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent/agenttest"
)

func TestServeAndCall(t *testing.T) {
	node := agenttest.NewNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	var serveLog bytes.Buffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-socket", node.Socket, "-name", "echo-1", "-capability", "demo.echo"}, nil, &serveLog, &serveLog)
	}()
	waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
	defer waitCancel()
	if err := node.WaitReady(waitCtx, "echo-1"); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		data, stdin, want string
	}{
		{`"hello"`, "", "HELLO"},
		{"-", `"from stdin"`, "FROM STDIN"},
		{"not json", "", "NOT JSON"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"-socket", node.Socket, "-call", "demo.echo", "-data", tt.data},
			strings.NewReader(tt.stdin), &out, &errOut)
		if err != nil {
			t.Fatalf("call %q: %v (%s)", tt.data, err, errOut.String())
		}
		var ans Answer
		if err := json.Unmarshal(out.Bytes(), &ans); err != nil {
			t.Fatalf("answer %q: %v", out.String(), err)
		}
		if want := (Answer{Echo: tt.want, Agent: "test-node/echo-1", Node: "test-node", Lang: "go"}); ans != want {
			t.Errorf("answer = %+v, want %+v", ans, want)
		}
		if !strings.Contains(errOut.String(), "answered by test-node/echo-1 on node test-node") {
			t.Errorf("stderr = %q, want who answered", errOut.String())
		}
	}

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-socket", node.Socket, "-call", "no.such", "-data", "1"}, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("call of an unknown capability = %v, want a NotFound error", err)
	}

	cancel()
	if err := <-errc; err != nil {
		t.Errorf("serve returned %v, want nil after ctx ended", err)
	}
	if _, ok := node.Agent("echo-1"); ok {
		t.Error("the agent did not deregister on shutdown")
	}
}
