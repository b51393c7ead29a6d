package socketapi

import (
	"bufio"
	"io"
	"net"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// HTTP/2 frame types and flags the sniffer reads (RFC 9113 §6).
const (
	frameHeaderLen = 9
	frameHeaders   = 0x1
	frameSettings  = 0x4
	flagAck        = 0x1
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// emptySettings is a server connection preface: a SETTINGS frame with no
// settings (every value at its default).
var emptySettings = []byte{0, 0, 0, frameSettings, 0, 0, 0, 0, 0}

// h2IsGRPC reads, without consuming, the first request on an HTTP/2
// connection and reports whether it is gRPC (content-type application/grpc).
// gRPC goes to grpc-go; anything else (Connect JSON over h2c) to the HTTP
// server, so a Connect client on HTTP/2 prior knowledge is served instead of
// being refused with 415 by grpc-go.
//
// A gRPC client sends no request before the server's preface, so the
// sniffer sends one first: an empty SETTINGS frame. grpc-go ignores the
// client's acknowledgement of it; net/http does not, so the HTTP side gets
// the connection through ackDropConn. Anything unexpected (no HEADERS frame
// within the peek buffer or the sniff window) is taken for gRPC, the
// established path.
func h2IsGRPC(c net.Conn, br *bufio.Reader) bool {
	if _, err := c.Write(emptySettings); err != nil {
		return true
	}
	off := len(http2Preface)
	for {
		head, err := br.Peek(off + frameHeaderLen)
		if err != nil {
			return true
		}
		h := head[off:]
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		end := off + frameHeaderLen + length
		if end > br.Size() {
			return true
		}
		if h[3] != frameHeaders {
			off = end
			continue
		}
		frame, err := br.Peek(end)
		if err != nil {
			return true
		}
		ct, ok := contentType(h[4], frame[off+frameHeaderLen:end])
		return !ok || strings.HasPrefix(ct, "application/grpc")
	}
}

// contentType finds the content-type in a HEADERS frame's payload. The
// frame starts the connection's first header block, so the decoder needs
// no earlier state.
func contentType(flags byte, p []byte) (string, bool) {
	if flags&flagPadded != 0 {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return "", false
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			return "", false
		}
		p = p[5:]
	}
	var ct string
	d := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == "content-type" {
			ct = f.Value
		}
	})
	d.SetMaxStringLength(4096)
	d.Write(p) // a block continued in CONTINUATION frames decodes in part
	return ct, ct != ""
}

// ackDropConn hands an HTTP/2 connection to net/http without the client's
// acknowledgement of the sniffer's SETTINGS, which net/http would take for
// an acknowledgement of settings it never sent (a protocol error). It
// parses frame headers until it has dropped that one frame, then reads
// straight through.
type ackDropConn struct {
	net.Conn
	r           *bufio.Reader
	preface     int // preface bytes still to pass
	payloadLeft int // bytes of the current frame's payload still to pass
	header      []byte
	dropped     bool
}

func newAckDropConn(c net.Conn, r *bufio.Reader) *ackDropConn {
	return &ackDropConn{Conn: c, r: r, preface: len(http2Preface)}
}

func (c *ackDropConn) Read(p []byte) (int, error) {
	for {
		switch {
		case len(c.header) > 0:
			n := copy(p, c.header)
			c.header = c.header[n:]
			return n, nil
		case c.preface > 0 || c.payloadLeft > 0:
			left := &c.payloadLeft
			if c.preface > 0 {
				left = &c.preface
			}
			n, err := c.r.Read(p[:min(len(p), *left)])
			*left -= n
			return n, err
		case c.dropped:
			return c.r.Read(p)
		}
		var h [frameHeaderLen]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return 0, err
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if h[3] == frameSettings && h[4]&flagAck != 0 && length == 0 {
			c.dropped = true
			continue
		}
		c.header, c.payloadLeft = h[:], length
	}
}

// Unwrap gives access to the underlying connection (for peer credentials).
func (c *ackDropConn) Unwrap() net.Conn { return c.Conn }
