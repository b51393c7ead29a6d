package socketapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// post sends body as Connect unary JSON, the way curl --unix-socket does.
func post(t *testing.T, c *http.Client, path string, body io.Reader, length int64) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://meshnode"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return resp.StatusCode, out
}

// repeat is an endless stream of one byte, for bodies too big to build.
type repeat byte

func (r repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func hugeName(n int64) io.Reader {
	return io.MultiReader(strings.NewReader(`{"name":"`), io.LimitReader(repeat('a'), n), strings.NewReader(`"}`))
}

// TestJSONBadBodiesAreTheCallersFault: a body the server cannot use is a 4xx
// that says what is wrong, never internal (500) or unavailable (503).
func TestJSONBadBodiesAreTheCallersFault(t *testing.T) {
	const limit = 1 << 20
	s := startServer(t, Config{MaxMessage: limit})
	c := httpClient(t, s.Path())
	const huge = 64 << 20
	cases := []struct {
		name     string
		body     func() io.Reader
		length   int64 // -1: chunked, no Content-Length
		status   int
		code     string
		mentions string
	}{
		{"malformed", func() io.Reader { return strings.NewReader(`{"name":`) }, 8, 400, "invalid_argument", "not valid JSON"},
		{"trailing garbage", func() io.Reader { return strings.NewReader(`{"name":"a"} x`) }, 14, 400, "invalid_argument", "not valid JSON"},
		{"nested 100000 deep (arrays)", func() io.Reader {
			return strings.NewReader(strings.Repeat("[", 100000) + strings.Repeat("]", 100000))
		}, 200000, 400, "invalid_argument", "nests deeper than 100"},
		{"nested 100000 deep (objects)", func() io.Reader {
			return strings.NewReader(strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000))
		}, 600001, 400, "invalid_argument", "nests deeper than 100"},
		{"invalid UTF-8", func() io.Reader { return strings.NewReader("{\"name\":\"\xff\xfe\"}") }, 13, 400, "invalid_argument", "UTF-8"},
		{"wrong type", func() io.Reader { return strings.NewReader(`{"name":5}`) }, 10, 400, "invalid_argument", "meshnode.v1.RegisterRequest"},
		{"64 MiB", func() io.Reader { return hugeName(huge) }, huge + 11, 429, "resource_exhausted", "max message size (1048576 bytes)"},
		{"64 MiB chunked", func() io.Reader { return hugeName(huge) }, -1, 429, "resource_exhausted", "max message size (1048576 bytes)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, c, "/meshnode.v1.RegistryService/Register", tc.body(), tc.length)
			var ce connectError
			if err := json.Unmarshal(out, &ce); err != nil {
				t.Fatalf("answer %d %q is not a Connect error: %v", status, out, err)
			}
			if status != tc.status || ce.Code != tc.code || !strings.Contains(ce.Message, tc.mentions) {
				t.Errorf("got %d %s %q; want %d %s mentioning %q", status, ce.Code, ce.Message, tc.status, tc.code, tc.mentions)
			}
		})
	}
}

// TestJSONGoodBodiesPass: the guard replays what it read; a valid request,
// an empty body, unknown fields and a body exactly at the limit get through.
func TestJSONGoodBodiesPass(t *testing.T) {
	const limit = 64 << 10
	s := startServer(t, Config{MaxMessage: limit})
	c := httpClient(t, s.Path())
	atLimit := `{"zzz":"` + strings.Repeat("a", limit-10) + `"}` // unknown: not echoed back
	for _, body := range []string{`{"name":"a","futureField":{"x":[1,2]}}`, ``, atLimit} {
		status, out := post(t, c, "/meshnode.v1.RegistryService/Register", strings.NewReader(body), int64(len(body)))
		if status != http.StatusOK {
			t.Errorf("body of %d bytes: %d %.200s", len(body), status, out)
			continue
		}
		var resp struct {
			Agent struct{ Name string } `json:"agent"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("answer %q: %v", out, err)
		}
		if strings.HasPrefix(body, `{"name":"a"`) && resp.Agent.Name != "a" {
			t.Errorf("handler saw name %.20q for body %.40q", resp.Agent.Name, body)
		}
	}
	// Not a method of ours: left to vanguard, which says so.
	if status, _ := post(t, c, "/meshnode.v1.RegistryService/NoSuch", bytes.NewReader([]byte(`{`)), 1); status == http.StatusInternalServerError {
		t.Errorf("unknown method: %d", status)
	}
}
