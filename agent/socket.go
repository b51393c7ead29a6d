package agent

import (
	"os"
	"path/filepath"
)

// SocketEnv is the environment variable that names the node's socket; the
// meshnode CLI reads the same one.
const SocketEnv = "MESHNODE_SOCKET"

// DefaultSocket returns the socket an Agent or Dial uses when none is given:
// $MESHNODE_SOCKET if set, else the node's default <data-dir>/meshnode.sock,
// where the data dir is /var/lib/meshnode for root and
// $XDG_STATE_HOME/meshnode (default ~/.local/state/meshnode) otherwise.
func DefaultSocket() string {
	return defaultSocket(os.Getenv, os.Geteuid(), os.UserHomeDir)
}

func defaultSocket(getenv func(string) string, euid int, home func() (string, error)) string {
	if s := getenv(SocketEnv); s != "" {
		return s
	}
	if euid == 0 {
		return "/var/lib/meshnode/meshnode.sock"
	}
	state := getenv("XDG_STATE_HOME")
	if state == "" {
		h, err := home()
		if err != nil || h == "" {
			// No home: fall back to the root default rather than a
			// relative path that depends on the working directory.
			return "/var/lib/meshnode/meshnode.sock"
		}
		state = filepath.Join(h, ".local", "state")
	}
	return filepath.Join(state, "meshnode", "meshnode.sock")
}
