package node

import "time"

// SetAttachOpenTimeout shortens the wait for an Attach stream's first
// message, for tests; it returns the function that restores it.
func SetAttachOpenTimeout(d time.Duration) (restore func()) {
	old := attachOpenTimeout
	attachOpenTimeout = d
	return func() { attachOpenTimeout = old }
}
