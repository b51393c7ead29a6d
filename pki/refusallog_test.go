package pki

import (
	"testing"
	"time"
)

// A peer refused many times a second gets one line a minute, and the next
// line counts the ones left out; another peer has its own count.
func TestRefusalLogOneLinePerPeerPerInterval(t *testing.T) {
	r := refusalLog{last: map[string]*refusalEntry{}}
	t0 := time.Unix(1000, 0)
	logged := 0
	for i := range 600 { // 10 a second for a minute
		if ok, _ := r.admit("spiffe://d/node/n4", t0.Add(time.Duration(i)*100*time.Millisecond), time.Minute); ok {
			logged++
		}
	}
	if logged != 1 {
		t.Fatalf("%d lines in a minute of refusals, want 1", logged)
	}
	if ok, _ := r.admit("spiffe://d/node/n5", t0.Add(time.Second), time.Minute); !ok {
		t.Fatal("another peer's first refusal was not logged")
	}
	ok, suppressed := r.admit("spiffe://d/node/n4", t0.Add(time.Minute), time.Minute)
	if !ok || suppressed != 599 {
		t.Fatalf("after a minute: logged %v with %d suppressed, want a line counting 599", ok, suppressed)
	}
}
