package e2e

import (
	"testing"
	"time"
)

// The README's walkthrough itself is TestREADMEWalkthrough (readme_test.go),
// which runs the README's block word for word.

// wtWait polls cond until it holds or the time is up.
func wtWait(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
