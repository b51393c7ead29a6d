package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// fakeSource answers from fixed messages, or fails every call with err.
type fakeSource struct{ err error }

func (f *fakeSource) Traffic(context.Context) (*meshnodev1.TrafficResponse, error) {
	return &meshnodev1.TrafficResponse{Nodes: []string{"n1"}, Edges: []*meshnodev1.TrafficEdge{{CallerAgent: "n1/a", CalleeAgent: "n2/b"}}}, f.err
}
func (f *fakeSource) Status(context.Context) (*meshnodev1.StatusResponse, error) {
	return &meshnodev1.StatusResponse{}, f.err
}
func (f *fakeSource) Members(context.Context) (*meshnodev1.MembersResponse, error) {
	return &meshnodev1.MembersResponse{}, f.err
}
func (f *fakeSource) Agents(context.Context) (*meshnodev1.ListAgentsResponse, error) {
	return &meshnodev1.ListAgentsResponse{Agents: []*meshnodev1.Agent{{Id: "n1/a"}}}, f.err
}
func (f *fakeSource) Decisions(context.Context) (*meshnodev1.ListDecisionsResponse, error) {
	return &meshnodev1.ListDecisionsResponse{}, f.err
}
func (f *fakeSource) Bundle(_ context.Context, id string) (*meshnodev1.QuorumBundle, error) {
	if id == "missing" {
		return nil, fmt.Errorf("decision %s: %w", id, ErrNotFound)
	}
	return &meshnodev1.QuorumBundle{Decision: &meshnodev1.Decision{Outcome: meshnodev1.Choice_CHOICE_APPROVE}}, f.err
}
func (f *fakeSource) Trust(context.Context) (*meshnodev1.GetTrustBundleResponse, error) {
	return &meshnodev1.GetTrustBundleResponse{}, f.err
}

func get(t *testing.T, s *Server, host, path string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	r.Host = host
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func TestEndpoints(t *testing.T) {
	up, err := New(Config{Source: &fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	down, _ := New(Config{Source: &fakeSource{err: fmt.Errorf("dial: %w", ErrUnreachable)}})
	for _, tc := range []struct {
		name       string
		s          *Server
		host, path string
		code       int
		contains   string
	}{
		{"traffic", up, "127.0.0.1:1", "/api/traffic", 200, `"calleeAgent":"n2/b"`},
		{"agents come with traffic", up, "127.0.0.1:1", "/api/traffic", 200, `"id":"n1/a"`},
		{"bundle enums are numbers for the signed bytes", up, "127.0.0.1:1", "/api/decisions/d1/bundle", 200, `"outcome":1`},
		{"unknown decision", up, "127.0.0.1:1", "/api/decisions/missing/bundle", 404, "not found"},
		{"node down is 503", down, "127.0.0.1:1", "/api/cluster", 503, "node unreachable"},
		{"node down decisions", down, "localhost:1", "/api/decisions", 503, "node unreachable"},
		{"page", up, "[::1]:1", "/", 200, "<"},
		{"rebinding host refused", up, "evil.example:1", "/api/traffic", 403, "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := get(t, tc.s, tc.host, tc.path)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.contains) {
				t.Fatalf("GET %s (Host %s) = %d %q; want %d containing %q", tc.path, tc.host, w.Code, w.Body.String(), tc.code, tc.contains)
			}
			if w.Code != 200 && strings.HasPrefix(tc.path, "/api/") && w.Code != 403 {
				var body map[string]string
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] == "" {
					t.Fatalf("error body %q is not {\"error\": ...}", w.Body.String())
				}
			}
		})
	}
	if w := get(t, up, "127.0.0.1:1", "/"); !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("no same-origin CSP: %q", w.Header().Get("Content-Security-Policy"))
	}
}

func TestNewNeedsSource(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a Source succeeded")
	}
}
