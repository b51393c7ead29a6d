package node_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// registerEnv makes the test binary a process that registers one agent
// name, prints the gRPC code (and message), and exits: an agent that ran
// and is gone.
const registerEnv = "MESHNODE_TEST_REGISTER"

func runRegister(spec string) int {
	socket, name, _ := strings.Cut(spec, ",")
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = meshnodev1.NewRegistryServiceClient(conn).Register(ctx, &meshnodev1.RegisterRequest{Name: name, Capabilities: []*meshnodev1.Capability{{Name: "named.work"}}})
	fmt.Printf("%s %s\n", status.Code(err), status.Convert(err).Message())
	return 0
}

// An agent name belongs to the uid that first registered it: after the
// owning process exits, a process of another uid (a real second process,
// uid 65534) cannot register the name, while the owner's uid can. The state
// machine decides, so a node restart or the reaper changes nothing.
func TestAgentNameBelongsToItsUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process under a second uid")
	}
	nodes := startCluster(t)
	bin := accessibleCopy(t, os.Args[0])
	// Let uid 65534 reach the socket (mode 0660, group 0): open the node's
	// data dir and the test's cluster root (both made by this test), nothing
	// above them.
	dataDir := filepath.Dir(nodes[0].socket)
	for _, dir := range []string{dataDir, filepath.Dir(dataDir)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	register := func(uid uint32) string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), registerEnv+"="+nodes[0].socket+",named")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: 0}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("process of uid %d: %v\n%s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := register(0); !strings.HasPrefix(got, "OK") {
		t.Fatalf("the first registration (uid 0): %s", got)
	}
	// The owner exited a moment ago: its name is still its uid's.
	if got := register(65534); !strings.HasPrefix(got, "PermissionDenied") || !strings.Contains(got, "belongs to uid 0") {
		t.Fatalf("uid 65534 taking the name of an agent that just exited: %s, want PermissionDenied naming uid 0", got)
	}
	if got := register(0); !strings.HasPrefix(got, "OK") {
		t.Fatalf("the owner's uid registering again: %s", got)
	}
}

// accessibleCopy copies the executable at path into a directory any uid may
// read and execute.
func accessibleCopy(t *testing.T, path string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mn-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "node.test")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
