package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	"github.com/agentmesh/meshnode/internal/benchutil"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// intruderEnv makes the test binary act as another process that tries to
// act for an agent it did not register (see TestMain).
const intruderEnv = "MESHNODE_TEST_INTRUDER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(intruderEnv); spec != "" {
		os.Exit(runIntruder(spec))
	}
	if spec := os.Getenv(registerEnv); spec != "" {
		os.Exit(runRegister(spec))
	}
	benchutil.ServeBaselineIfAsked()
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
	os.Exit(code)
}

// runIntruder tries every owner-only operation on the agent and prints the
// gRPC code of each answer as JSON.
func runIntruder(spec string) int {
	socket, agentID, _ := strings.Cut(spec, ",")
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]string{}
	_, err = meshnodev1.NewRegistryServiceClient(conn).Deregister(ctx, &meshnodev1.DeregisterRequest{AgentId: agentID})
	out["deregister"] = status.Code(err).String()
	_, err = meshnodev1.NewInvokeServiceClient(conn).Respond(ctx, &meshnodev1.RespondRequest{AgentId: agentID, CallId: "x",
		Result: &meshnodev1.RespondRequest_Ok{Ok: &meshnodev1.CallResult{Payload: []byte("forged")}}})
	out["respond"] = status.Code(err).String()
	st, err := meshnodev1.NewInvokeServiceClient(conn).Serve(ctx, &meshnodev1.ServeRequest{AgentId: agentID})
	if err == nil {
		_, err = st.Recv()
	}
	out["serve"] = status.Code(err).String()
	at, err := meshnodev1.NewInvokeServiceClient(conn).Attach(ctx)
	if err == nil {
		at.Send(&meshnodev1.AttachRequest{Msg: &meshnodev1.AttachRequest_Serve{Serve: &meshnodev1.ServeRequest{AgentId: agentID}}})
		_, err = at.Recv()
	}
	out["attach"] = status.Code(err).String()
	name := agentID[strings.Index(agentID, "/")+1:]
	_, err = meshnodev1.NewRegistryServiceClient(conn).Register(ctx, &meshnodev1.RegisterRequest{Name: name, Capabilities: []*meshnodev1.Capability{{Name: "steal"}}})
	out["register"] = status.Code(err).String()
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// TestAgentIdentityIsTheProcess: another process cannot deregister, serve
// (or attach), answer for or re-register an agent that a live process owns.
func TestAgentIdentityIsTheProcess(t *testing.T) {
	nodes := startCluster(t)
	serveAgent(t, nodes[0], "owned", map[string]agent.HandlerFunc{"owned": echoFrom("n1")})
	waitFor(t, 20*time.Second, "the owned agent is ready", func() bool { return len(readyAgents(t, nodes[0], "owned")) == 1 })

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), intruderEnv+"="+nodes[0].socket+",n1/owned")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("intruder process: %v\n%s", err, out)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("intruder output %q: %v", out, err)
	}
	want := map[string]string{"deregister": "PermissionDenied", "respond": "PermissionDenied", "serve": "PermissionDenied", "attach": "PermissionDenied", "register": "AlreadyExists"}
	for op, code := range want {
		if got[op] != code {
			t.Errorf("intruder %s: got %s, want %s", op, got[op], code)
		}
	}
	// The agent still serves.
	waitFor(t, 10*time.Second, "n2 sees the owned agent", func() bool { return len(readyAgents(t, nodes[1], "owned")) == 1 })
	resp, err := meshnodev1.NewInvokeServiceClient(nodes[1].conn(t)).Call(context.Background(), &meshnodev1.CallRequest{Capability: "owned", Payload: []byte("x")})
	if err != nil || string(resp.GetPayload()) != "n1:x" {
		t.Fatalf("owned agent after the intrusion: %v %q", err, resp.GetPayload())
	}
}
