package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*Agent)
		want  string
	}{
		{"bad name", func(a *Agent) { a.Name = "has space" }, "Name"},
		{"long name", func(a *Agent) { a.Name = strings.Repeat("n", 65) }, "Name"},
		{"non-utf8 name", func(a *Agent) { a.Name = "\xff" }, "Name"},
		{"negative in-flight", func(a *Agent) { a.MaxInFlight = -1 }, "MaxInFlight"},
		{"negative votes in flight", func(a *Agent) { a.MaxVotesInFlight = -1 }, "MaxVotesInFlight"},
		{"bad backoff", func(a *Agent) { a.ReconnectBackoff.Initial = -1 }, "ReconnectBackoff.Initial"},
		{"capability with space", func(a *Agent) { a.Handle(Capability{Name: "a b"}, echo) }, `capability "a b"`},
		{"non-utf8 capability", func(a *Agent) { a.Handle(Capability{Name: "\xff"}, echo) }, "UTF-8"},
		{"negative cost", func(a *Agent) { a.Handle(Capability{Name: "c", Cost: -1}, echo) }, "Cost"},
		{"negative concurrency", func(a *Agent) { a.Handle(Capability{Name: "c", MaxConcurrency: -1}, echo) }, "MaxConcurrency"},
		{"too many capabilities", func(a *Agent) {
			for i := range 257 {
				a.Handle(Capability{Name: fmt.Sprint("c", i)}, echo)
			}
		}, "at most 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{}
			tt.setup(a)
			err := a.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want an error naming %s", err, tt.want)
			}
			if err2 := a.Serve(t.Context()); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("Serve = %v, want the Validate error", err2)
			}
		})
	}
	if err := (&Agent{}).Validate(); err != nil {
		t.Errorf("zero Agent: %v", err)
	}
}

func TestHandlePanicsOnMisuse(t *testing.T) {
	for name, f := range map[string]func(a *Agent){
		"empty name":  func(a *Agent) { a.Handle(Capability{}, echo) },
		"nil handler": func(a *Agent) { a.Handle(Capability{Name: "x"}, nil) },
		"duplicate":   func(a *Agent) { a.Handle(Capability{Name: "x"}, echo); a.Handle(Capability{Name: "x"}, echo) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f(&Agent{})
		})
	}
}

func TestProgramName(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/inventory-agent":         "inventory-agent",
		"./agent.py":                       "agent",
		"/tmp/go-build1/b001/exe/my agent": "my-agent",
		"/":                                defaultAgentName,
		"/x/" + strings.Repeat("a", 100):   strings.Repeat("a", 64),
	} {
		if got := programName(in); got != want {
			t.Errorf("programName(%q) = %q, want %q", in, got, want)
		}
		if err := validName(programName(in)); err != nil {
			t.Errorf("programName(%q) is not a valid name: %v", in, err)
		}
	}
}

func TestDefaultSocket(t *testing.T) {
	home := func() (string, error) { return "/home/ann", nil }
	noHome := func() (string, error) { return "", errors.New("no home") }
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	tests := []struct {
		name string
		env  map[string]string
		euid int
		home func() (string, error)
		want string
	}{
		{"env wins", map[string]string{SocketEnv: "/run/m.sock", "XDG_STATE_HOME": "/s"}, 0, home, "/run/m.sock"},
		{"root", nil, 0, home, "/var/lib/meshnode/meshnode.sock"},
		{"xdg", map[string]string{"XDG_STATE_HOME": "/s"}, 1000, home, "/s/meshnode/meshnode.sock"},
		{"home", nil, 1000, home, "/home/ann/.local/state/meshnode/meshnode.sock"},
		{"no home", nil, 1000, noHome, "/var/lib/meshnode/meshnode.sock"},
	}
	for _, tt := range tests {
		if got := defaultSocket(env(tt.env), tt.euid, tt.home); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
