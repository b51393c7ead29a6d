package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fakeSeeds plays the seeds a joiner dials. A seed listed in down answers
// Unavailable for its first down[seed] calls (-1: always); any other seed
// passes the request to the fixture's CA, as a server would, and answers
// with what crosses the wire: the response bytes or a bare status.
type fakeSeeds struct {
	f    *refusalFixture
	mu   sync.Mutex
	down map[string]int
	// calls is every seed dialled, in order; roles the role each asked for.
	calls []string
	roles []meshnodev1.JoinRole
	// waits is every backoff Join asked After for.
	waits []time.Duration
}

func (s *fakeSeeds) call(ctx context.Context, seed string, _ *tls.Config, body []byte) ([]byte, error) {
	req := &meshnodev1.JoinRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad request: %v", err)
	}
	s.mu.Lock()
	s.calls = append(s.calls, seed)
	s.roles = append(s.roles, req.GetRole())
	n, down := s.down[seed]
	if down && n > 0 {
		s.down[seed] = n - 1
	}
	s.mu.Unlock()
	if down && n != 0 {
		return nil, status.Errorf(codes.Unavailable, "dial %s: no route to host", seed)
	}
	resp, err := s.f.ca.Join(ctx, req)
	if err != nil {
		return nil, status.Convert(err).Err() // what the wire carries
	}
	return proto.Marshal(resp)
}

// after returns a channel that fires at once, recording the wait.
func (s *fakeSeeds) after(d time.Duration) <-chan time.Time {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func (s *fakeSeeds) config(t *testing.T, token string, seeds ...string) JoinConfig {
	log, _ := newTestLogger()
	return JoinConfig{
		Seeds: seeds, Token: token, Name: "n1", DataDir: t.TempDir(),
		Call: s.call, After: s.after, Now: s.f.clock.Now, Logger: log,
	}
}

func TestJoinTriesSeedsInTurnAndRetriesUnavailable(t *testing.T) {
	f := newRefusalFixture(t)
	seeds := &fakeSeeds{f: f, down: map[string]int{"a": -1, "b": 1, "c": -1}}
	cfg := seeds.config(t, f.token(t, TokenRequest{}), "a", "b", "c")
	log, logs := newTestLogger()
	cfg.Logger = log
	creds, err := Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(seeds.calls, " "), "a b c a b"; got != want {
		t.Fatalf("seeds dialled %q, want %q (in turn, again after a backoff, up to the first answer)", got, want)
	}
	if len(seeds.waits) != 1 {
		t.Fatalf("backoffs %v, want one between the two rounds", seeds.waits)
	}
	if id, err := creds.Check(testTD, f.clock.Now()); err != nil || id != NodeID(testTD, "n1") {
		t.Fatalf("credentials for %v: %v", id, err)
	}
	saved, err := LoadCredentials(cfg.DataDir)
	if err != nil || !saved.Leaf().Equal(creds.Leaf()) {
		t.Fatalf("the credentials were not saved to the data dir: %v", err)
	}
	for _, want := range []string{"join attempt failed; will retry", "joined the cluster: certificate issued", "seed=b"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestJoinBackoffDoublesUpToTheCap(t *testing.T) {
	f := newRefusalFixture(t)
	seeds := &fakeSeeds{f: f, down: map[string]int{"a": 7}}
	cfg := seeds.config(t, f.token(t, TokenRequest{}), "a")
	cfg.MinBackoff, cfg.MaxBackoff = time.Second, 10*time.Second
	if _, err := Join(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{1, 2, 4, 8, 10, 10, 10}
	if len(seeds.waits) != len(want) {
		t.Fatalf("backoffs %v, want %v seconds", seeds.waits, want)
	}
	for i, w := range want {
		if seeds.waits[i] != w*time.Second {
			t.Fatalf("backoffs %v, want %v seconds", seeds.waits, want)
		}
	}
}

func TestJoinStopsAtAFinalRefusal(t *testing.T) {
	f := newRefusalFixture(t)
	used := f.token(t, TokenRequest{})
	seeds := &fakeSeeds{f: f}
	if _, err := Join(context.Background(), seeds.config(t, used, "a", "b")); err != nil {
		t.Fatal(err)
	}
	seeds.calls = nil
	_, err := Join(context.Background(), seeds.config(t, used, "a", "b"))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "join via a refused") || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("reused token: err = %v, want PermissionDenied naming the seed and the reason", err)
	}
	if len(seeds.calls) != 1 || len(seeds.waits) != 0 {
		t.Fatalf("a final refusal was retried: calls %v, backoffs %v", seeds.calls, seeds.waits)
	}
}

func TestIsFinalJoinError(t *testing.T) {
	for code, final := range map[codes.Code]bool{
		codes.PermissionDenied: true, codes.InvalidArgument: true, codes.FailedPrecondition: true, codes.Unauthenticated: true,
		codes.Unavailable: false, codes.DeadlineExceeded: false, codes.Internal: false, codes.Canceled: false,
	} {
		err := status.Error(code, "x")
		if got := IsFinalJoinError(err); got != final {
			t.Errorf("IsFinalJoinError(%v) = %v, want %v", code, got, final)
		}
		if got := IsFinalJoinError(errors.Join(errors.New("wrapped"), err)); got != final {
			t.Errorf("IsFinalJoinError(wrapped %v) = %v, want %v", code, got, final)
		}
	}
	if IsFinalJoinError(errors.New("plain")) {
		t.Error("a plain error (no status) is final")
	}
}

func TestJoinReturnsWhenCancelledDuringBackoff(t *testing.T) {
	f := newRefusalFixture(t)
	seeds := &fakeSeeds{f: f, down: map[string]int{"a": -1}}
	cfg := seeds.config(t, f.token(t, TokenRequest{}), "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := make(chan struct{})
	cfg.After = func(time.Duration) <-chan time.Time {
		close(waiting)
		return nil // the backoff never ends: only ctx can
	}
	done := make(chan error, 1)
	go func() { _, err := Join(ctx, cfg); done <- err }()
	<-waiting
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "no seed answered") {
			t.Fatalf("err = %v, want context.Canceled and 'no seed answered'", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Join kept waiting after its context was cancelled")
	}
}

func TestJoinReturnsWhenCancelledDuringACall(t *testing.T) {
	f := newRefusalFixture(t)
	seeds := &fakeSeeds{f: f}
	cfg := seeds.config(t, f.token(t, TokenRequest{}), "a", "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	cfg.Call = func(cctx context.Context, _ string, _ *tls.Config, _ []byte) ([]byte, error) {
		calls++
		cancel()
		<-cctx.Done()
		return nil, status.FromContextError(cctx.Err()).Err()
	}
	_, err := Join(ctx, cfg)
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want context.Canceled after 1", err, calls)
	}
}

func TestJoinAsksForTheRoleOfItsFlag(t *testing.T) {
	serverTok := TokenRequest{Role: meshnodev1.JoinRole_JOIN_ROLE_SERVER}
	for _, tc := range []struct {
		name   string
		server bool
		want   meshnodev1.JoinRole
		warn   bool
	}{
		{"--server", true, meshnodev1.JoinRole_JOIN_ROLE_SERVER, false},
		{"no --server", false, meshnodev1.JoinRole_JOIN_ROLE_CLIENT, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRefusalFixture(t) // each joins under the same name, which is claimed once
			seeds := &fakeSeeds{f: f}
			cfg := seeds.config(t, f.token(t, serverTok), "a")
			log, logs := newTestLogger()
			cfg.Server, cfg.Logger = tc.server, log
			if _, err := Join(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			if seeds.roles[0] != tc.want {
				t.Fatalf("asked for %v, want %v", seeds.roles[0], tc.want)
			}
			if got := strings.Contains(logs.String(), "runs without --server"); got != tc.warn {
				t.Fatalf("warning about the missing --server: %v, want %v:\n%s", got, tc.warn, logs)
			}
		})
	}
}

func TestJoinRefusesABadAnswerAtOnce(t *testing.T) {
	f := newRefusalFixture(t)
	seeds := &fakeSeeds{f: f}
	cfg := seeds.config(t, f.token(t, TokenRequest{}), "a", "b")
	calls := 0
	cfg.Call = func(context.Context, string, *tls.Config, []byte) ([]byte, error) {
		calls++
		return []byte{0xff, 0xff}, nil
	}
	if _, err := Join(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "join via a: bad answer") || calls != 1 {
		t.Fatalf("err = %v after %d calls, want a bad answer from a, at once", err, calls)
	}
}

func TestJoinConfigValidate(t *testing.T) {
	call := func(context.Context, string, *tls.Config, []byte) ([]byte, error) { return nil, nil }
	good := JoinConfig{Seeds: []string{"a"}, Token: "t", Name: "n1", Call: call}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*JoinConfig){
		"no seeds":        func(c *JoinConfig) { c.Seeds = nil },
		"no token":        func(c *JoinConfig) { c.Token = "" },
		"no call":         func(c *JoinConfig) { c.Call = nil },
		"bad name":        func(c *JoinConfig) { c.Name = "Not A Name" },
		"min above max":   func(c *JoinConfig) { c.MinBackoff, c.MaxBackoff = 2*time.Second, time.Second },
		"negative period": func(c *JoinConfig) { c.AttemptTimeout = -1 },
	} {
		c := good
		change(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}
