//go:build !linux

package transport

import (
	"log/slog"
	"net"
)

// raiseUDPBuffers asks for quic-go's recommended buffers; only Linux can
// tell us whether it worked.
func raiseUDPBuffers(c *net.UDPConn, log *slog.Logger) {
	if err := c.SetReadBuffer(wantUDPBuffer); err != nil {
		log.Warn("cannot raise UDP receive buffer", "err", err)
	}
	if err := c.SetWriteBuffer(wantUDPBuffer); err != nil {
		log.Warn("cannot raise UDP send buffer", "err", err)
	}
}

const wantUDPBuffer = 7 << 20
