package routing

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The only agent fails every call: retries stay within ratio*calls plus the
// per-second floor over every budget window.
func TestBudgetCapsRetriesWhenAgentFailsAll(t *testing.T) {
	clock := newFakeClock()
	r := newTestRouter(t, clock, 31)
	cs := cands(1)
	sim := newSim(clock, 2, map[string]simAgent{"a00": {latency: time.Millisecond, fail: 1}})
	p := policyNamed(Latency)
	p.Breaker.Disabled = true // isolate the budget
	p.HardFloor, p.QualityTiers = 0, nil
	p.Retry.MaxAttempts = 5
	req := Request{Capability: "cap", Policy: p, Meta: Metadata{Idempotent: true}}
	const calls = 20000
	start := clock.Now()
	for i := range calls {
		if _, err := r.Route(context.Background(), req, cs, sim); status.Code(err) != codes.Unavailable {
			t.Fatalf("call %d: %v", i, err)
		}
		clock.Advance(4 * time.Millisecond) // ~200 calls/s
	}
	elapsed := clock.Now().Sub(start)
	windows := elapsed.Seconds()/p.Retry.BudgetWindow.Seconds() + 1
	limit := p.Retry.BudgetRatio*calls + p.Retry.MinRetriesPerSec*p.Retry.BudgetWindow.Seconds()*windows
	if float64(sim.retries) > limit {
		t.Fatalf("%d retries for %d calls over %v exceed the budget %v", sim.retries, calls, elapsed, limit)
	}
	// Without a budget it would have been 4 retries per call.
	if sim.retries < calls/10 {
		t.Fatalf("only %d retries: the budget should allow ~20%% of %d", sim.retries, calls)
	}
	t.Logf("%d calls, %d retries (%.1f%%), limit %.0f", calls, sim.retries, 100*float64(sim.retries)/calls, limit)
}

func TestBudgetFloorAllowsRetriesWhenQuiet(t *testing.T) {
	var b budget
	cfg := DefaultRetry()
	now := time.Unix(0, 0)
	n := 0
	for b.tryRetry(now, cfg) {
		n++
	}
	if n != 100 { // 10/s * 10 s, no calls
		t.Fatalf("quiet budget allowed %d retries, want 100", n)
	}
	now = now.Add(11 * time.Second)
	for range 1000 {
		b.recordCall(now, cfg)
	}
	n = 0
	for b.tryRetry(now, cfg) {
		n++
	}
	if n != 300 {
		t.Fatalf("budget after 1000 calls allowed %d retries, want 300", n)
	}
}

func TestRetrySafety(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "down")
	withInfo, _ := status.New(codes.Aborted, "try elsewhere").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(0)})
	cases := []struct {
		name    string
		started bool
		err     error
		meta    Metadata
		want    int // attempts
	}{
		{"not started is always safe", false, unavailable, Metadata{}, 3},
		{"started, non-idempotent, no key: never", true, unavailable, Metadata{}, 1},
		{"started with idempotency key, Unavailable", true, unavailable, Metadata{IdempotencyKey: "k"}, 3},
		{"started, idempotent, Unavailable", true, unavailable, Metadata{Idempotent: true}, 3},
		{"started, idempotent, Internal is not retryable", true, status.Error(codes.Internal, "boom"), Metadata{Idempotent: true}, 1},
		{"started, marked retryable", true, MarkRetryable(status.Error(codes.Internal, "boom")), Metadata{IdempotencyKey: "k"}, 3},
		{"started, RetryInfo detail", true, withInfo.Err(), Metadata{IdempotencyKey: "k"}, 3},
		{"marked retryable but no key", true, MarkRetryable(status.Error(codes.Internal, "boom")), Metadata{}, 1},
		{"invalid argument never", false, status.Error(codes.InvalidArgument, "bad"), Metadata{Idempotent: true}, 1},
		{"deadline never", false, status.Error(codes.DeadlineExceeded, "slow"), Metadata{Idempotent: true}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t, newFakeClock(), 32)
			n := 0
			inv := InvokerFunc(func(context.Context, Attempt) (bool, error) { n++; return tc.started, tc.err })
			res, err := r.Route(context.Background(), Request{Capability: "cap", Policy: policyNamed(Latency), Meta: tc.meta}, cands(5), inv)
			if err == nil || n != tc.want || res.Attempts != tc.want {
				t.Fatalf("attempts = %d (result %d), err %v; want %d", n, res.Attempts, err, tc.want)
			}
			if status.Code(err) != status.Code(tc.err) {
				t.Fatalf("caller got %v, want the agent's code %v", status.Code(err), status.Code(tc.err))
			}
		})
	}
}

func TestRetryGoesToAnotherAgent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 3))
	for trial := range 200 {
		r := newTestRouter(t, newFakeClock(), uint64(trial))
		var tried []string
		inv := InvokerFunc(func(_ context.Context, a Attempt) (bool, error) {
			tried = append(tried, a.Candidate.AgentID)
			if a.Number < 3 {
				return false, status.Error(codes.Unavailable, "down")
			}
			return true, nil
		})
		name := PolicyNames[rng.IntN(len(PolicyNames))]
		res, err := r.Route(context.Background(), Request{Capability: "cap", Policy: policyNamed(name)}, cands(3), inv)
		if err != nil || res.Attempts != 3 {
			t.Fatalf("%v: %v", res, err)
		}
		if tried[0] == tried[1] || tried[1] == tried[2] || tried[0] == tried[2] {
			t.Fatalf("%s retried the same agent: %v", name, tried)
		}
	}
	// One agent only: the retry reuses it.
	r := newTestRouter(t, newFakeClock(), 1)
	n := 0
	inv := InvokerFunc(func(context.Context, Attempt) (bool, error) {
		if n++; n < 2 {
			return false, status.Error(codes.Unavailable, "down")
		}
		return true, nil
	})
	if res, err := r.Route(context.Background(), Request{Capability: "cap"}, cands(1), inv); err != nil || res.Attempts != 2 {
		t.Fatalf("single agent retry: %+v %v", res, err)
	}
}

// Property: full-jitter backoff lies in [0, min(max, base*2^(n-1))).
func TestBackoffFullJitter(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 33)
	cfg := DefaultRetry()
	for n := 1; n <= 8; n++ {
		ceil := min(cfg.BackoffBase<<(n-1), cfg.BackoffMax)
		var sum time.Duration
		for range 500 {
			d := r.backoff(n, cfg)
			if d < 0 || d >= ceil {
				t.Fatalf("retry %d: backoff %v outside [0, %v)", n, d, ceil)
			}
			sum += d
		}
		if mean := sum / 500; mean < ceil/3 || mean > 2*ceil/3 {
			t.Fatalf("retry %d: mean backoff %v, want about %v", n, mean, ceil/2)
		}
	}
}

func TestCallerCancelStopsRetries(t *testing.T) {
	r := newTestRouter(t, newFakeClock(), 34)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	inv := InvokerFunc(func(context.Context, Attempt) (bool, error) {
		n++
		cancel()
		return false, status.Error(codes.Canceled, "caller went away")
	})
	_, err := r.Route(ctx, Request{Capability: "cap"}, cands(3), inv)
	if n != 1 || err == nil {
		t.Fatalf("attempts %d, err %v", n, err)
	}
	if !errors.Is(context.Cause(ctx), context.Canceled) {
		t.Fatal("context not canceled")
	}
}
