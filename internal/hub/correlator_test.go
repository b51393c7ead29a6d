package hub

import (
	"errors"
	"testing"
	"time"
)

// TestCorrelator runs scripts of steps against one request, "r" sent to
// agent "a", and checks each step's outcome.
func TestCorrelator(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		op     string // answer, finish, keep (finish, kept until t0+1m), sweep
		agent  string // for answer
		value  string // for answer
		at     time.Duration
		err    error  // for answer: the error kind, nil for taken
		first  string // for answer: the first answer returned with ErrAlreadyAnswered
		waited string // the value the waiter holds after the step ("" none)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first answer is taken", []step{
			{op: "answer", agent: "a", value: "yes", waited: "yes"},
		}},
		{"an answer from another agent does not match", []step{
			{op: "answer", agent: "b", value: "yes", err: errNotPendingForTest},
			{op: "answer", agent: "a", value: "no", waited: "no"},
		}},
		{"a second answer returns the first", []step{
			{op: "answer", agent: "a", value: "yes", waited: "yes"},
			{op: "answer", agent: "a", value: "no", err: ErrAlreadyAnswered, first: "yes"},
		}},
		{"a call is forgotten when its wait ends", []step{
			{op: "finish"},
			{op: "answer", agent: "a", value: "late", err: errNotPendingForTest},
		}},
		{"a kept request still takes a late first answer", []step{
			{op: "keep"},
			{op: "sweep", at: time.Minute},
			{op: "answer", agent: "a", value: "late"},
			{op: "answer", agent: "a", value: "other", err: ErrAlreadyAnswered, first: "late"},
		}},
		{"a kept request is forgotten after its time", []step{
			{op: "answer", agent: "a", value: "yes", waited: "yes"},
			{op: "keep"},
			{op: "sweep", at: time.Minute + time.Nanosecond},
			{op: "answer", agent: "a", value: "no", err: errNotPendingForTest},
		}},
		{"sweep leaves requests still waited for", []step{
			{op: "sweep", at: time.Hour},
			{op: "answer", agent: "a", value: "yes", waited: "yes"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCorrelator[string](errNotPendingForTest, "request", "gone")
			w, err := c.add("r", "a", CallContext{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.add("r", "b", CallContext{}); !errors.Is(err, ErrDuplicateRequest) {
				t.Fatalf("a second add of r: %v, want ErrDuplicateRequest", err)
			}
			for i, s := range tt.steps {
				switch s.op {
				case "answer":
					first, err := c.answer("r", s.agent, s.value)
					if !errors.Is(err, s.err) || (s.err == nil && err != nil) {
						t.Fatalf("step %d: answer %q from %s: %v, want %v", i, s.value, s.agent, err, s.err)
					}
					if first != s.first {
						t.Fatalf("step %d: first answer %q, want %q", i, first, s.first)
					}
				case "finish":
					c.finish("r", zeroTime)
				case "keep":
					c.finish("r", t0.Add(time.Minute))
				case "sweep":
					c.sweep(t0.Add(s.at))
				}
				if s.waited != "" {
					select {
					case got := <-w.answer:
						if got != s.waited {
							t.Fatalf("step %d: the waiter got %q, want %q", i, got, s.waited)
						}
					default:
						t.Fatalf("step %d: the waiter got nothing, want %q", i, s.waited)
					}
				}
			}
		})
	}
}

var errNotPendingForTest = errors.New("not pending")
