package agenttest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// connectPost sends a curl-style Connect JSON request over the node's
// socket: HTTP/1.1, no Connect-Protocol-Version header.
func connectPost(t *testing.T, n *Node, method, body string) (int, map[string]any) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", n.Socket)
		},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://localhost/meshnode.v1."+method, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s: %d %q: %v", method, resp.StatusCode, data, err)
	}
	return resp.StatusCode, out
}

func TestConnectJSONOnTheSameSocket(t *testing.T) {
	n := NewNode(t)
	if code, out := connectPost(t, n, "NodeService/Status", `{}`); code != 200 || out["name"] != "test-node" {
		t.Errorf("Status = %d %v, want 200 with name test-node", code, out)
	}
	code, out := connectPost(t, n, "RegistryService/Register", `{"name":"py","capabilities":[{"name":"x"}]}`)
	if agent, _ := out["agent"].(map[string]any); code != 200 || agent["id"] != "test-node/py" {
		t.Errorf("Register = %d %v, want agent test-node/py", code, out)
	}
	if code, out := connectPost(t, n, "RegistryService/Register", `{"name":""}`); code != 400 || out["code"] != "invalid_argument" {
		t.Errorf("Register without a name = %d %v, want 400 invalid_argument", code, out)
	}
	if regs := n.Registrations(); len(regs) != 2 || regs[0].GetCapabilities()[0].GetName() != "x" {
		t.Errorf("registrations = %v", regs)
	}
}
