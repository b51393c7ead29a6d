package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// StreamHandler serves one streaming RPC. Returning ends the stream: nil
// closes it cleanly (the client's Recv sees io.EOF), an error built with
// grpc/status reaches the client's Recv with its code and message.
type StreamHandler func(ctx context.Context, peer Peer, s *Stream) error

// Stream is one streaming RPC: length-prefixed protobuf messages both ways.
// Send and Recv may be called concurrently with each other, but not each
// with itself.
type Stream struct {
	s        *quic.Stream
	ctx      context.Context
	cancel   context.CancelFunc
	peer     Peer
	maxFrame int
	// frameTimeout bounds one message's arrival once its first byte has.
	frameTimeout time.Duration
	stop         func() bool

	recvMu  sync.Mutex
	recvErr error // sticky terminal error once the peer ended the stream
}

// HandleStream registers h for streaming method on node connections.
func (e *Endpoint) HandleStream(method string, h StreamHandler) {
	e.hmu.Lock()
	e.streamHandlers[method] = h
	e.hmu.Unlock()
}

// OpenStream opens a streaming RPC to method on the peer at addr. The
// stream lives until ctx ends or Close is called; always Close it.
func (e *Endpoint) OpenStream(ctx context.Context, addr, method string) (*Stream, error) {
	pc, err := e.pool.get(ctx, addr)
	if err != nil {
		return nil, wireError(ctx, fmt.Sprintf("connecting to %s for stream %s", addr, method), err)
	}
	qs, err := pc.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, wireError(ctx, "opening stream "+method, err)
	}
	var hdr requestHeader
	hdr.Method = method
	if dl, ok := ctx.Deadline(); ok {
		hdr.Timeout = max(1, time.Until(dl))
	}
	payload := appendRequest(nil, hdr, nil)
	b := append([]byte{byte(ChannelRPCStream)}, appendFrameHeader(nil, len(payload))...)
	if _, err := qs.Write(append(b, payload...)); err != nil {
		resetStream(qs, CodeCanceled)
		return nil, wireError(ctx, "opening stream "+method, err)
	}
	st := newStream(ctx, qs, pc.peer, e.cfg.MaxFrameSize, e.cfg.FrameReadTimeout)
	st.stop = context.AfterFunc(st.ctx, func() { resetStream(qs, CodeCanceled) })
	return st, nil
}

func newStream(ctx context.Context, qs *quic.Stream, peer Peer, maxFrame int, frameTimeout time.Duration) *Stream {
	ctx, cancel := context.WithCancel(ctx)
	return &Stream{s: qs, ctx: ctx, cancel: cancel, peer: peer, maxFrame: maxFrame, frameTimeout: frameTimeout}
}

// Context is the stream's context: canceled when the stream is closed or
// reset, the caller's ctx ends, or (server side) the request deadline passes.
func (s *Stream) Context() context.Context { return s.ctx }

// Peer is the authenticated remote side.
func (s *Stream) Peer() Peer { return s.peer }

// Send writes one message.
func (s *Stream) Send(m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return status.Errorf(codes.Internal, "encoding stream message: %v", err)
	}
	return s.sendRaw(kindMessage, b)
}

func (s *Stream) sendRaw(kind byte, b []byte) error {
	if len(b)+1 > s.maxFrame {
		return status.Errorf(codes.ResourceExhausted, "stream message is %d bytes, limit %d", len(b), s.maxFrame)
	}
	buf := make([]byte, 0, frameHeaderLen+1+len(b))
	buf = appendFrameHeader(buf, 1+len(b))
	buf = append(buf, kind)
	if _, err := s.s.Write(append(buf, b...)); err != nil {
		return wireError(s.ctx, "sending on stream", err)
	}
	return nil
}

// Recv reads the next message into m. It returns io.EOF when the peer
// finished cleanly, or the peer's status error.
func (s *Stream) Recv(m proto.Message) error {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if s.recvErr != nil {
		return s.recvErr
	}
	frame, err := readFrameTimed(s.s, s.maxFrame, 0, s.frameTimeout)
	switch {
	case errors.Is(err, io.EOF):
		s.recvErr = io.EOF
		return io.EOF
	case err != nil:
		if code, report := frameErrorCode(err); report {
			resetStream(s.s, code)
		}
		return wireError(s.ctx, "receiving on stream", err)
	case len(frame) == 0:
		resetStream(s.s, CodeBadFrame)
		return status.Error(codes.Internal, "empty stream frame")
	case frame[0] == kindStatus:
		s.recvErr = decodeStatus(frame[1:])
		return s.recvErr
	case frame[0] != kindMessage:
		resetStream(s.s, CodeBadFrame)
		return status.Errorf(codes.Internal, "unknown stream frame kind %d", frame[0])
	}
	if err := proto.Unmarshal(frame[1:], m); err != nil {
		return status.Errorf(codes.Internal, "decoding stream message: %v", err)
	}
	return nil
}

// CloseSend finishes the sending direction; the peer's Recv sees io.EOF.
func (s *Stream) CloseSend() error { return s.s.Close() }

// Close abandons the stream in both directions and releases it. Call it
// after the last Recv (io.EOF or error) or to give up early.
func (s *Stream) Close() error {
	if s.stop != nil {
		s.stop()
	}
	s.cancel()
	s.s.Close()
	s.s.CancelRead(CodeNoError)
	return nil
}

// serveRPCStream runs the stream handler for one ChannelRPCStream stream.
func (e *Endpoint) serveRPCStream(pc *peerConn, qs *quic.Stream) {
	// OpenStream writes the header with the channel tag: it must not lag.
	frame, err := readFrameTimed(qs, e.cfg.MaxFrameSize, e.cfg.HandshakeTimeout, e.cfg.FrameReadTimeout)
	if err != nil {
		if code, report := frameErrorCode(err); report {
			e.refuseStream(pc, qs, code, "bad stream header frame", err)
		} else {
			resetStream(qs, code)
		}
		return
	}
	hdr, _, err := parseRequest(frame)
	if err != nil {
		e.refuseStream(pc, qs, CodeBadFrame, "bad stream header", err)
		return
	}
	e.hmu.RLock()
	h := e.streamHandlers[hdr.Method]
	e.hmu.RUnlock()
	st := &Stream{s: qs, peer: pc.peer, maxFrame: e.cfg.MaxFrameSize, frameTimeout: e.cfg.FrameReadTimeout}
	st.ctx, st.cancel = handlerContext(qs.Context(), hdr.Timeout)
	var herr error
	if h == nil {
		herr = status.Errorf(codes.Unimplemented, "unknown stream method %q", hdr.Method)
	} else {
		herr = safeStream(h, st, pc.peer)
	}
	if herr != nil {
		st.sendRaw(kindStatus, encodeStatus(herr))
	}
	st.cancel()
	qs.Close()
	qs.CancelRead(CodeNoError)
}

func safeStream(h StreamHandler, st *Stream, p Peer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = status.Errorf(codes.Internal, "stream handler panicked: %v", r)
		}
	}()
	return h(st.ctx, p, st)
}
