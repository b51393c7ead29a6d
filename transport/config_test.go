package transport_test

import (
	"strings"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

func TestConfigValidate(t *testing.T) {
	tlsp := transporttest.NewTLS(t, td, "cfg")
	cases := []struct {
		name  string
		mod   func(*transport.Config)
		field string // "" means valid
	}{
		{"defaults", func(*transport.Config) {}, ""},
		{"no TLS", func(c *transport.Config) { c.TLS = nil }, "TLS"},
		{"bad bind", func(c *transport.Config) { c.BindAddr = "nope" }, "BindAddr"},
		{"bad advertise", func(c *transport.Config) { c.AdvertiseAddr = "10.0.0.1" }, "AdvertiseAddr"},
		{"tiny frames", func(c *transport.Config) { c.MaxFrameSize = 10 }, "MaxFrameSize"},
		{"slow handshake", func(c *transport.Config) { c.HandshakeTimeout = 10 * time.Second }, "HandshakeTimeout"},
		{"keepalive above idle", func(c *transport.Config) { c.KeepAlivePeriod = time.Minute }, "KeepAlivePeriod"},
		{"stream window above conn window", func(c *transport.Config) { c.MaxStreamReceiveWindow = 32 << 20 }, "MaxStreamReceiveWindow"},
		{"idle pool above stream limit", func(c *transport.Config) { c.MaxIncomingStreams = 4; c.MaxIdleRPCStreams = 8 }, "MaxIdleRPCStreams"},
		{"backoff inverted", func(c *transport.Config) { c.DialBackoffMin = time.Hour }, "DialBackoffMin"},
		{"join frame above node frame", func(c *transport.Config) { c.MaxJoinFrameSize = 8 << 20 }, "MaxJoinFrameSize"},
		{"per-source joins above total", func(c *transport.Config) { c.MaxJoinConnsPerIP = 100 }, "MaxJoinConnsPerIP"},
		{"negative join streams", func(c *transport.Config) { c.MaxJoinStreams = -1 }, "MaxJoinStreams"},
		{"join idle above idle", func(c *transport.Config) { c.JoinIdleTimeout = time.Hour }, "JoinIdleTimeout"},
		{"negative frame timeout", func(c *transport.Config) { c.FrameReadTimeout = -time.Second }, "FrameReadTimeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := transport.DefaultConfig()
			cfg.TLS = tlsp
			tc.mod(&cfg)
			err := cfg.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
	// Zero values mean defaults.
	if err := (transport.Config{TLS: tlsp}).Validate(); err != nil {
		t.Fatalf("zero config with TLS refused: %v", err)
	}
}

func TestAdvertiseAddr(t *testing.T) {
	for _, tc := range []struct{ bind, adv, want string }{
		{"127.0.0.1:7001", "", "127.0.0.1:7001"},
		{"0.0.0.0:7001", "10.1.2.3:9", "10.1.2.3:9"},
		{"127.0.0.1:0", "", ""},
	} {
		if got := transport.AdvertiseAddr(tc.bind, tc.adv); got != tc.want {
			t.Errorf("AdvertiseAddr(%q, %q) = %q, want %q", tc.bind, tc.adv, got, tc.want)
		}
	}
	if got := transport.AdvertiseAddr("0.0.0.0:7001", ""); !strings.HasSuffix(got, ":7001") || strings.HasPrefix(got, "0.0.0.0") {
		t.Errorf("unspecified bind advertised as %q", got)
	}
}
