package agent

import (
	"strings"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	half := func() float64 { return 0.5 } // the midpoint: jitter adds nothing
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.delay(i+1, half); got != w*time.Millisecond {
			t.Errorf("attempt %d: delay %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	// A huge attempt number must not overflow past Max.
	if got := b.delay(1_000_000, half); got != time.Second {
		t.Errorf("attempt 1e6: delay %v, want the 1s cap", got)
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: time.Second, Jitter: 0.2}
	if got := b.delay(1, func() float64 { return 0 }); got != 800*time.Millisecond {
		t.Errorf("lowest jitter: %v, want 800ms", got)
	}
	if got := b.delay(1, func() float64 { return 0.999999 }); got < 1199*time.Millisecond || got > 1200*time.Millisecond {
		t.Errorf("highest jitter: %v, want just under 1.2s", got)
	}
	none := Backoff{Initial: time.Second, Max: time.Second, Jitter: -1}
	if got := none.withDefaults().delay(1, func() float64 { return 0 }); got != time.Second {
		t.Errorf("negative Jitter: %v, want exactly 1s (no jitter, even after defaults)", got)
	}
}

func TestBackoffDefaults(t *testing.T) {
	if got, want := (Backoff{}).withDefaults(), DefaultBackoff(); got != want {
		t.Errorf("zero Backoff = %+v, want %+v", got, want)
	}
	if err := (Backoff{}).Validate(); err != nil {
		t.Errorf("zero Backoff invalid: %v", err)
	}
}

func TestBackoffValidate(t *testing.T) {
	tests := []struct {
		b     Backoff
		field string
	}{
		{Backoff{Initial: -1}, "Initial"},
		{Backoff{Max: -1}, "Max"},
		{Backoff{Initial: time.Second, Max: time.Millisecond}, "Max must be at least"},
		{Backoff{Multiplier: 0.5}, "Multiplier"},
		{Backoff{Jitter: 1.5}, "Jitter"},
	}
	for _, tt := range tests {
		err := tt.b.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tt.b, err, tt.field)
		}
	}
}
