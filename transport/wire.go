package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
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
	CodeRefused        quic.StreamErrorCode = 0x14 // channel not served (no listener, shutting down, join conn), or peer not admitted
	CodeSlowFrame      quic.StreamErrorCode = 0x15 // a frame did not arrive in time (Config.FrameReadTimeout)
)

// Connection close codes.
const (
	ConnCodeNoError     quic.ApplicationErrorCode = 0
	ConnCodeBadIdentity quic.ApplicationErrorCode = 0x21 // peer certificate has no usable node identity
	ConnCodeShutdown    quic.ApplicationErrorCode = 0x22 // the endpoint is closing
	ConnCodeRefused     quic.ApplicationErrorCode = 0x23 // a connection limit or idle limit was reached
)

// Sentinel errors for wire-level failures.
var (
	// ErrFrameTooLarge means a frame's length prefix exceeds the maximum frame size.
	ErrFrameTooLarge = errors.New("frame exceeds the maximum frame size")
	// ErrBadFrame means a frame or header could not be decoded.
	ErrBadFrame = errors.New("malformed frame")
	// ErrUnknownChannel means a stream opened with a channel tag this node does not know.
	ErrUnknownChannel = errors.New("unknown stream channel tag")
	// ErrSlowFrame means a frame did not arrive within its read deadline.
	ErrSlowFrame = errors.New("frame did not arrive in time")
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

// maxFrameChunk is how far a frame's buffer may run ahead of the bytes that
// have arrived: a peer that announces a large frame and trickles it costs
// us what it sent plus one chunk, not what it announced.
const maxFrameChunk = 64 << 10

// minFrameChunk is the first chunk of a frame larger than it, and the
// largest frame read with a single allocation.
const minFrameChunk = 4 << 10

// ReadFrame reads one length-prefixed frame of at most maxSize bytes. A
// clean end of stream before the first byte returns io.EOF; a frame cut
// short returns an error wrapping ErrBadFrame (and io.ErrUnexpectedEOF).
// The length is checked before any payload buffer is allocated, and the
// payload is read in chunks of at most 64 KiB, each allocated when the
// previous one is full, so a peer cannot make us allocate much more than it
// sent.
func ReadFrame(r io.Reader, maxSize int) ([]byte, error) { return readFrame(r, maxSize, nil) }

// readFrame is ReadFrame that calls started, if set, once the frame's first
// byte has arrived (to start the frame's deadline).
func readFrame(r io.Reader, maxSize int, started func()) ([]byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return nil, err
	}
	if started != nil {
		started()
	}
	if _, err := io.ReadFull(r, hdr[1:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated length prefix: %w", ErrBadFrame, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(maxSize) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxSize)
	}
	buf, err := readPayload(r, int(n))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated payload (%d bytes announced): %w", ErrBadFrame, n, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	return buf, nil
}

// readPayload reads n bytes. A small payload is one allocation (the hot
// path). A larger one is read into chunks that start at minFrameChunk and
// double up to maxFrameChunk, each allocated only when the previous one is
// full, and joined once complete: a stalled frame costs minFrameChunk.
func readPayload(r io.Reader, n int) ([]byte, error) {
	if n <= minFrameChunk {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	var chunks [][]byte
	size := minFrameChunk
	for got := 0; got < n; {
		c := make([]byte, min(n-got, size))
		if _, err := io.ReadFull(r, c); err != nil {
			return nil, err
		}
		chunks = append(chunks, c)
		got += len(c)
		size = min(2*size, maxFrameChunk)
	}
	return bytes.Join(chunks, nil), nil
}

// readFrameTimed reads one frame from a QUIC stream under two deadlines:
// the frame's first byte must arrive within idle (zero: no limit, e.g. a
// pooled stream between calls), and the whole frame within timeout of its
// first byte (zero: the idle deadline covers the whole frame), so a peer
// cannot hold a stream and its buffer by trickling. A missed deadline
// returns an error wrapping ErrSlowFrame.
func readFrameTimed(s *quic.Stream, maxSize int, idle, timeout time.Duration) ([]byte, error) {
	if idle > 0 {
		s.SetReadDeadline(time.Now().Add(idle))
	}
	var started func()
	if timeout > 0 {
		started = func() { s.SetReadDeadline(time.Now().Add(timeout)) }
	}
	frame, err := readFrame(s, maxSize, started)
	s.SetReadDeadline(time.Time{})
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil, fmt.Errorf("%w: %w", ErrSlowFrame, err)
	}
	return frame, err
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
