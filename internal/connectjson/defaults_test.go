package connectjson

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDefaults(t *testing.T) {
	var got string
	h := Defaults(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Connect-Protocol-Version")
	}))
	cases := []struct {
		method, contentType, version, want string
	}{
		{http.MethodPost, "application/json", "", "1"},
		{http.MethodPost, "application/proto", "", "1"},
		{http.MethodPost, "application/json", "2", "2"}, // the caller's own version stands
		{http.MethodPost, "text/plain", "", ""},
		{http.MethodGet, "application/json", "", ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "/meshnode.v1.NodeService/Status", nil)
		r.Header.Set("Content-Type", c.contentType)
		if c.version != "" {
			r.Header.Set("Connect-Protocol-Version", c.version)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != c.want {
			t.Errorf("%s %s (version %q): Connect-Protocol-Version %q, want %q", c.method, c.contentType, c.version, got, c.want)
		}
	}
}
