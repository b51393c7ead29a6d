package transport

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/internal/clock"
)

func TestLogLimiter(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	l := &logLimiter{clock: clk}
	if !l.allow("a") || l.allow("a") || !l.allow("b") {
		t.Fatal("want the first line per key through and the second held back")
	}
	clk.Advance(logEvery)
	if !l.allow("a") {
		t.Fatal("a key is held back for longer than logEvery")
	}
	// A flood of new keys is bounded: held back once the table is full of
	// recent entries, let through again once they expire.
	for i := range 2 * maxLogKeys {
		l.allow(fmt.Sprint("k", i))
	}
	if n := len(l.last); n > maxLogKeys {
		t.Fatalf("limiter holds %d keys, bound %d", n, maxLogKeys)
	}
	if l.allow("new") {
		t.Fatal("a new key got through a full table of recent keys")
	}
	clk.Advance(logEvery)
	if !l.allow("new") {
		t.Fatal("expired keys were not pruned")
	}
}

func TestSourceKeyGroupsIPv6By64(t *testing.T) {
	key := func(s string) string { return sourceKey(&net.UDPAddr{IP: net.ParseIP(s), Port: 1}).String() }
	cases := map[string]string{
		"192.0.2.7":          "192.0.2.7/32",
		"::ffff:192.0.2.7":   "192.0.2.7/32",
		"2001:db8:1:2::1":    "2001:db8:1:2::/64",
		"2001:db8:1:2:ff::9": "2001:db8:1:2::/64",
	}
	for in, want := range cases {
		if got := key(in); got != want {
			t.Errorf("sourceKey(%s) = %s, want %s", in, got, want)
		}
	}
}
