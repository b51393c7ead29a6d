package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
)

// Channel is the first byte of every QUIC stream: it says which subsystem
// the stream belongs to. Tags are part of the wire protocol (ALPN meshnode/1):
// never renumber them.
type Channel byte

const (
	chanInvalid      Channel = 0
	ChannelRPC       Channel = 1 // long-lived unary RPC stream: request, response, request, ...
	ChannelRPCStream Channel = 2 // one streaming RPC: header frame, then messages both ways
	ChannelRaft      Channel = 3 // one hashicorp/raft connection (raw bytes, raft frames them)
	ChannelGossip    Channel = 4 // one memberlist stream connection (push/pull, fallback probes)
	ChannelPacket    Channel = 5 // one memberlist packet too large for a datagram: one frame
	chanLimit        Channel = 6
)

func (c Channel) String() string {
	switch c {
	case ChannelRPC:
		return "rpc"
	case ChannelRPCStream:
		return "rpc-stream"
	case ChannelRaft:
		return "raft"
	case ChannelGossip:
		return "gossip-stream"
	case ChannelPacket:
		return "gossip-packet"
	}
	return fmt.Sprintf("unknown(%d)", byte(c))
}

// Stream reset codes (QUIC application error codes). They travel on the
// wire: never renumber them.
const (
	CodeNoError        quic.StreamErrorCode = 0
	CodeCanceled       quic.StreamErrorCode = 0x10 // the caller gave up (ctx canceled or deadline)
	CodeUnknownChannel quic.StreamErrorCode = 0x11 // stream header names no known channel
	CodeFrameTooLarge  quic.StreamErrorCode = 0x12 // length prefix above the frame limit
	CodeBadFrame       quic.StreamErrorCode = 0x13 // truncated or malformed frame or header
	CodeRefused        quic.StreamErrorCode = 0x14 // channel not served (no listener, shutting down, join conn)
)

// Connection close codes.
const (
	ConnCodeNoError     quic.ApplicationErrorCode = 0
	ConnCodeBadIdentity quic.ApplicationErrorCode = 0x21 // peer certificate has no usable node identity
	ConnCodeShutdown    quic.ApplicationErrorCode = 0x22 // the endpoint is closing
)

// Sentinel errors for wire-level failures.
var (
	// ErrFrameTooLarge means a frame's length prefix exceeds the maximum frame size.
	ErrFrameTooLarge = errors.New("frame exceeds the maximum frame size")
	// ErrBadFrame means a frame or header could not be decoded.
	ErrBadFrame = errors.New("malformed frame")
	// ErrUnknownChannel means a stream opened with a channel tag this node does not know.
	ErrUnknownChannel = errors.New("unknown stream channel tag")
)

// frameHeaderLen is the size of a frame's big-endian uint32 length prefix.
const frameHeaderLen = 4

// ParseChannel decodes a stream's channel header byte.
func ParseChannel(b byte) (Channel, error) {
	c := Channel(b)
	if c == chanInvalid || c >= chanLimit {
		return chanInvalid, fmt.Errorf("%w: %d", ErrUnknownChannel, b)
	}
	return c, nil
}

// readChannel reads and decodes the channel header of a freshly accepted stream.
func readChannel(r io.Reader) (Channel, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return chanInvalid, fmt.Errorf("reading channel tag: %w", err)
	}
	return ParseChannel(b[0])
}

// ReadFrame reads one length-prefixed frame of at most maxSize bytes. A
// clean end of stream before the first byte returns io.EOF; a frame cut
// short returns an error wrapping ErrBadFrame (and io.ErrUnexpectedEOF).
// The length is checked before any payload buffer is allocated, so a peer
// cannot make us allocate more than maxSize.
func ReadFrame(r io.Reader, maxSize int) ([]byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated length prefix: %w", ErrBadFrame, err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(maxSize) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxSize)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated payload (%d bytes announced): %w", ErrBadFrame, n, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	return buf, nil
}

// appendFrameHeader appends the length prefix for a payload of n bytes.
func appendFrameHeader(b []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// requestHeader is the head of every RPC request frame and of a streaming
// RPC's first frame:
//
//	uvarint len(method) | method | uvarint timeout in microseconds (0: none) | body
//
// The timeout is relative, as in gRPC, so peers' clocks need not agree.
type requestHeader struct {
	Method  string
	Timeout time.Duration
}

const maxMethodLen = 256

func appendRequest(b []byte, h requestHeader, body []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(h.Method)))
	b = append(b, h.Method...)
	us := uint64(0)
	if h.Timeout > 0 {
		us = uint64(h.Timeout / time.Microsecond)
		if us == 0 {
			us = 1 // a sub-microsecond budget still means "almost expired", not "no deadline"
		}
	}
	b = binary.AppendUvarint(b, us)
	return append(b, body...)
}

// parseRequest decodes a request frame into its header and body. The body
// aliases frame.
func parseRequest(frame []byte) (requestHeader, []byte, error) {
	var h requestHeader
	n, k := binary.Uvarint(frame)
	if k <= 0 || n > maxMethodLen || uint64(len(frame)-k) < n {
		return h, nil, fmt.Errorf("%w: bad method length", ErrBadFrame)
	}
	frame = frame[k:]
	h.Method = string(frame[:n])
	frame = frame[n:]
	us, k := binary.Uvarint(frame)
	if k <= 0 || us > uint64(365*24*time.Hour/time.Microsecond) {
		return h, nil, fmt.Errorf("%w: bad timeout", ErrBadFrame)
	}
	h.Timeout = time.Duration(us) * time.Microsecond
	return h, frame[k:], nil
}

// Response and stream-message frames start with a kind byte.
const (
	kindMessage byte = 0 // the rest is the response / message body
	kindStatus  byte = 1 // the rest is a marshalled google.rpc.Status: the call failed
)
