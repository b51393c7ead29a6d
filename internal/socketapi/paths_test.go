package socketapi

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// An extra path is served on the HTTP/1.1 side as-is, and the Connect
// services beside it still answer.
func TestExtraHTTPPaths(t *testing.T) {
	s := startServer(t, Config{HTTP: map[string]http.Handler{"/metrics": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "up 1\n")
	})}})
	c := httpClient(t, s.Path())
	resp, err := c.Get("http://localhost/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "up 1\n" {
		t.Fatalf("/metrics: %d %q", resp.StatusCode, body)
	}
	resp, err = c.Post("http://localhost/meshnode.v1.RegistryService/Register", "application/json", strings.NewReader(`{"name":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"a"`) {
		t.Fatalf("Connect call beside /metrics: %d %s", resp.StatusCode, body)
	}
}
