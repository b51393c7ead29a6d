package socketapi

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func grpcClient(t *testing.T, path string) meshnodev1.RegistryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return meshnodev1.NewRegistryServiceClient(conn)
}

// TestBothProtocolsShareHandlersCredsAndErrors: one handler answers gRPC and
// Connect JSON, sees the kernel's credentials of the caller on both, and its
// errors pass through MapError on both.
func TestBothProtocolsShareHandlersCredsAndErrors(t *testing.T) {
	mapped := func(err error) error {
		if err == errPlain {
			return status.Error(codes.FailedPrecondition, "mapped: "+err.Error())
		}
		return err
	}
	s := startServer(t, Config{MapError: mapped})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	g := grpcClient(t, s.Path())
	resp, err := g.Register(ctx, &meshnodev1.RegisterRequest{Name: "a"})
	if err != nil {
		t.Fatalf("gRPC register: %v", err)
	}
	if resp.GetAgent().GetOwnerPid() != int32(os.Getpid()) || resp.GetAgent().GetOwnerUid() != uint32(os.Getuid()) {
		t.Errorf("gRPC side saw pid %d uid %d, want %d %d", resp.GetAgent().GetOwnerPid(), resp.GetAgent().GetOwnerUid(), os.Getpid(), os.Getuid())
	}
	_, err = g.Register(ctx, &meshnodev1.RegisterRequest{Name: "plain-error"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "mapped: ") {
		t.Errorf("gRPC error = %v; want MapError's FailedPrecondition", err)
	}

	c := httpClient(t, s.Path())
	code, out := post(t, c, "/meshnode.v1.RegistryService/Register", strings.NewReader(`{"name":"b"}`), -1)
	var ok struct {
		Agent struct {
			OwnerPid int32 `json:"ownerPid"`
		} `json:"agent"`
	}
	if err := json.Unmarshal(out, &ok); code != 200 || err != nil || ok.Agent.OwnerPid != int32(os.Getpid()) {
		t.Errorf("Connect register: %d %s; want the caller's pid %d", code, out, os.Getpid())
	}
	code, out = post(t, c, "/meshnode.v1.RegistryService/Register", strings.NewReader(`{"name":"plain-error"}`), -1)
	var ce connectError
	if err := json.Unmarshal(out, &ce); err != nil || code != 400 || ce.Code != "failed_precondition" || !strings.Contains(ce.Message, "mapped: ") {
		t.Errorf("Connect error = %d %s; want MapError's failed_precondition (HTTP 400)", code, out)
	}
}

// TestStopRemovesOnlyOurSocket: a server that stops removes its socket
// file, and a second server refuses a socket a live one serves.
func TestStopRemovesOnlyOurSocket(t *testing.T) {
	s := startServer(t, Config{})
	if _, err := New(Config{Path: s.Path()}); err != nil {
		t.Fatal(err)
	}
	second, _ := New(Config{Path: s.Path()})
	if err := second.Start(context.Background()); err == nil || !strings.Contains(err.Error(), ErrSocketInUse.Error()) {
		second.Close()
		t.Fatalf("second server on a live socket: %v; want ErrSocketInUse", err)
	}
	s.Close()
	if _, err := os.Stat(s.Path()); !os.IsNotExist(err) {
		t.Errorf("socket file still there after Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err == nil {
		t.Error("empty Path accepted")
	}
	if err := (Config{Path: "/" + strings.Repeat("a", MaxPath)}).Validate(); err == nil {
		t.Error("over-long Path accepted")
	}
	if err := (Config{Path: "/tmp/x.sock", MaxMessage: -1}).Validate(); err == nil {
		t.Error("negative MaxMessage accepted")
	}
}
