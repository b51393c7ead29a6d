package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("name: from-file\nlog_level: debug\nvoters: 5\njoin: [a:1, b:2]\ncall_timeout: 5s\n"), 0o600)
	cfg := DefaultConfig()
	if err := LoadFile(file, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv([]string{"MESHNODE_NAME=from-env", "PATH=/bin", "MESHNODE_CONFIG=ignored"}, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := SetKey(&cfg, "voters", "3"); err != nil { // a flag
		t.Fatal(err)
	}
	if cfg.Name != "from-env" {
		t.Errorf("name = %q: env must beat the file", cfg.Name)
	}
	if cfg.LogLevel != "debug" {
		t.Errorf("log_level = %q: the file must beat the default", cfg.LogLevel)
	}
	if cfg.Voters != 3 {
		t.Errorf("voters = %d: a flag must beat the file", cfg.Voters)
	}
	if len(cfg.Join) != 2 || cfg.Join[1] != "b:2" {
		t.Errorf("join = %v, want [a:1 b:2]", cfg.Join)
	}
	if cfg.CallTimeout != 5*time.Second {
		t.Errorf("call_timeout = %v", cfg.CallTimeout)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config) error
		key  string
	}{
		{"unknown key", func(c *Config) error { return SetKey(c, "nope", "1") }, "nope"},
		{"bad int", func(c *Config) error { return SetKey(c, "voters", "x") }, "voters"},
		{"bad bool", func(c *Config) error { return SetKey(c, "server", "maybe") }, "server"},
		{"bad duration", func(c *Config) error { return SetKey(c, "call_timeout", "soon") }, "call_timeout"},
		{"unknown env", func(c *Config) error { return ApplyEnv([]string{"MESHNODE_TYPO=1"}, c) }, "MESHNODE_TYPO"},
		{"bad name", func(c *Config) error { c.Name = "a b"; return c.Validate() }, "name"},
		{"voters 4", func(c *Config) error { c.Voters = 4; return c.Validate() }, "voters"},
		{"bad bind", func(c *Config) error { c.Bind = "x"; return c.Validate() }, "bind"},
		{"long socket", func(c *Config) error { c.Socket = "/" + strings.Repeat("x", 120); return c.Validate() }, "socket"},
		{"bad seed", func(c *Config) error { c.Join = []string{"nohost"}; return c.Validate() }, "join"},
		{"token without join", func(c *Config) error { c.Token = "t"; return c.Validate() }, "token"},
		{"short cert", func(c *Config) error { c.CertLifetime = time.Minute; return c.Validate() }, "cert_lifetime"},
		{"exporter", func(c *Config) error { c.TraceExporter = "jaeger"; return c.Validate() }, "trace_exporter"},
		{"payload", func(c *Config) error { c.MaxPayload = 1; return c.Validate() }, "max_payload"},
		{"log format", func(c *Config) error { c.LogFormat = "xml"; return c.Validate() }, "log_format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			err := tc.mod(&c)
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("got %v, want an ErrInvalidConfig naming %s", err, tc.key)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config must be valid: %v", err)
	}
}

func TestLoadFileRefusesUnknownKeys(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("data_dri: /x\n"), 0o600)
	c := DefaultConfig()
	if err := LoadFile(f, &c); err == nil || !strings.Contains(err.Error(), "data_dri") {
		t.Fatalf("got %v, want an error naming data_dri", err)
	}
}
