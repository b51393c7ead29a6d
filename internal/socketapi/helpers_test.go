package socketapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// registry is a RegistryService that echoes what it was given, so tests see
// exactly what reached the handler.
type registry struct {
	meshnodev1.UnimplementedRegistryServiceServer
}

func (registry) Register(ctx context.Context, req *meshnodev1.RegisterRequest) (*meshnodev1.RegisterResponse, error) {
	cred, err := PeerCredFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if req.GetName() == "plain-error" {
		return nil, errPlain
	}
	return &meshnodev1.RegisterResponse{Agent: &meshnodev1.Agent{Name: req.GetName(), OwnerUid: cred.UID, OwnerPid: cred.PID}}, nil
}

var errPlain = errors.New("a package's sentinel")

// startServer serves a registry on a fresh socket and stops it at the end.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "sapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.Path = filepath.Join(dir, "api.sock")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	meshnodev1.RegisterRegistryServiceServer(s.Registrar(), registry{})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	return s
}

// httpClient speaks HTTP/1.1 to the socket, as curl --unix-socket does.
func httpClient(t *testing.T, path string) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
