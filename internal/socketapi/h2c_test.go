package socketapi

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// h2cClient speaks HTTP/2 with prior knowledge, as a Connect client set up
// for h2c does.
func h2cClient(t *testing.T, path string) *http.Client {
	t.Helper()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestConnectJSONOverH2C: Connect JSON over HTTP/2 prior knowledge is
// served like HTTP/1.1 (same handler, credentials and body checks), while
// gRPC on other connections keeps working.
func TestConnectJSONOverH2C(t *testing.T) {
	s := startServer(t, Config{MaxMessage: 1 << 20})
	c := h2cClient(t, s.Path())
	for range 2 { // the second request reuses the connection
		resp, err := c.Post("http://meshnode/meshnode.v1.RegistryService/Register", "application/json", strings.NewReader(`{"name":"h2"}`))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("answered over %s", resp.Proto)
		}
		var ok struct {
			Agent struct {
				Name     string `json:"name"`
				OwnerPid int32  `json:"ownerPid"`
			} `json:"agent"`
		}
		if err := json.Unmarshal(out, &ok); resp.StatusCode != 200 || err != nil || ok.Agent.Name != "h2" || ok.Agent.OwnerPid != int32(os.Getpid()) {
			t.Fatalf("h2c Connect JSON: %d %s", resp.StatusCode, out)
		}
	}
	resp, err := c.Post("http://meshnode/meshnode.v1.RegistryService/Register", "application/json", strings.NewReader(`{"name":`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed JSON over h2c: %d, want 400", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := grpcClient(t, s.Path()).Register(ctx, &meshnodev1.RegisterRequest{Name: "g"}); err != nil {
		t.Errorf("gRPC beside h2c JSON: %v", err)
	}
}
