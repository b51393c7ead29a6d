package socketapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ErrSocketInUse is returned when a live process already serves the socket.
var ErrSocketInUse = errors.New("socket is served by a live process")

// MaxPath is the longest Unix socket path the kernel accepts
// (sizeof(sockaddr_un.sun_path) minus the terminating NUL).
const MaxPath = 107

// Listen listens on the agent API's Unix socket with mode 0660. A
// stale socket left by a crash is replaced; a live node's socket never is:
// we only remove the file after a dial to it fails.
func Listen(path string) (*net.UnixListener, error) {
	if len(path) > MaxPath {
		return nil, fmt.Errorf("socket path %q is %d bytes, over the kernel's limit of %d; pass a shorter --socket", path, len(path), MaxPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or pass another --socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s; stop that node or pass another --socket", ErrSocketInUse, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on socket %s: %w", path, err)
	}
	// We remove the file ourselves on close, after checking it is still ours.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		os.Remove(path)
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	return l, nil
}
