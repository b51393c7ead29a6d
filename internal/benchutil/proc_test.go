package benchutil

import (
	"os"
	"testing"
	"time"
)

func TestProcessReadingsMatchSelf(t *testing.T) {
	// Burn some CPU so the tick-granular reading moves.
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	cpu, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self := SelfCPU(); cpu <= 0 || cpu > self+0.05 || cpu < self-0.05 {
		t.Fatalf("/proc says %.2f CPU s, getrusage %.2f", cpu, self)
	}
	rss, err := ProcessPeakRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// getrusage's maxrss survives exec (it may be the parent's before
	// exec), so only the magnitude is checked: a test binary's peak is
	// megabytes, not bytes or gigabytes.
	if rss < 1 || rss > 1024 {
		t.Fatalf("/proc says %.1f MiB peak RSS", rss)
	}
	if _, err := ProcessCPU(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

func TestMicros(t *testing.T) {
	lat := []time.Duration{5 * time.Microsecond, time.Microsecond, 3 * time.Microsecond}
	if got := Micros(lat, 0.5); got != 3 {
		t.Fatalf("p50 = %v, want 3", got)
	}
	if got := Micros(lat, 1); got != 5 {
		t.Fatalf("p100 = %v, want 5", got)
	}
	if Micros(nil, 0.5) != 0 {
		t.Fatal("empty input")
	}
}
