package consensus

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Name: "n1", Server: true, DataDir: "/tmp/x"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"Name", func(c *Config) { c.Name = "" }},
		{"DataDir", func(c *Config) { c.DataDir = "" }},
		{"Bootstrap", func(c *Config) { c.Server, c.Bootstrap = false, true }},
		{"Voters", func(c *Config) { c.Voters = 4 }},
		{"LeaderLeaseTimeout", func(c *Config) { c.LeaderLeaseTimeout = 2 * time.Second }},
		{"ElectionTimeout", func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond }},
		{"MaxBatch", func(c *Config) { c.MaxBatch = 1 << 20 }},
		{"DeadServerGrace", func(c *Config) { c.DeadServerGrace = time.Second }},
	} {
		c := ok
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v does not name the field", tc.field, err)
		}
	}
	if d := DefaultConfig("n"); d.Voters != 3 || d.MaxBatch != 512 || d.HeartbeatTimeout != time.Second {
		t.Errorf("defaults: %+v", d)
	}
}
