//go:build linux

package transport

import (
	"log/slog"
	"net"
	"strconv"
	"syscall"
)

// wantUDPBuffer is what quic-go recommends for its socket buffers
// (https://github.com/quic-go/quic-go/wiki/UDP-Buffer-Sizes).
const wantUDPBuffer = 7 << 20

// raiseUDPBuffers raises the socket's receive and send buffers to
// wantUDPBuffer, with the privileged SO_*BUFFORCE when allowed, and logs
// one clear line with the sysctl to fix it when the kernel caps them.
func raiseUDPBuffers(c *net.UDPConn, log *slog.Logger) {
	raw, err := c.SyscallConn()
	if err != nil {
		log.Warn("cannot inspect UDP socket buffers", "err", err)
		return
	}
	type buf struct {
		name       string
		opt, force int
		set        func(int) error
		sysctlHint string
	}
	for _, b := range []buf{
		{"receive", syscall.SO_RCVBUF, syscall.SO_RCVBUFFORCE, c.SetReadBuffer, "net.core.rmem_max"},
		{"send", syscall.SO_SNDBUF, syscall.SO_SNDBUFFORCE, c.SetWriteBuffer, "net.core.wmem_max"},
	} {
		if sockBuf(raw, b.opt) >= wantUDPBuffer {
			continue
		}
		_ = b.set(wantUDPBuffer)
		if sockBuf(raw, b.opt) < wantUDPBuffer {
			_ = raw.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, b.force, wantUDPBuffer)
			})
		}
		if got := sockBuf(raw, b.opt); got < wantUDPBuffer {
			log.Warn("UDP "+b.name+" buffer below quic-go's recommendation; throughput may suffer under load",
				"got_kib", got/1024, "want_kib", wantUDPBuffer/1024,
				"fix", "sysctl -w "+b.sysctlHint+"="+strconv.Itoa(2*wantUDPBuffer))
		}
	}
}

// sockBuf returns the usable buffer size (Linux reports double the
// requested size to account for bookkeeping).
func sockBuf(raw syscall.RawConn, opt int) int {
	var n int
	_ = raw.Control(func(fd uintptr) {
		n, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt)
	})
	return n / 2
}
