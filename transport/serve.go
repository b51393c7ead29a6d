package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serveStream reads the channel tag of an accepted stream and hands the
// stream to its channel. Anything malformed resets only this stream.
func (e *Endpoint) serveStream(pc *peerConn, s *quic.Stream) {
	// A peer must say what a stream is for promptly; it must not park
	// stream slots with no tag.
	s.SetReadDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	ch, err := readChannel(s)
	s.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, io.EOF) { // opened and closed without use
			s.Close()
			return
		}
		e.refuseStream(pc, s, CodeUnknownChannel, "bad channel header", err)
		return
	}
	if pc.join && ch != ChannelRPC {
		e.refuseStream(pc, s, CodeRefused, "channel not served on join connections", fmt.Errorf("channel %s", ch))
		return
	}
	switch ch {
	case ChannelRPC:
		e.serveRPC(pc, s)
	case ChannelRPCStream:
		e.serveRPCStream(pc, s)
	case ChannelRaft:
		e.deliverRaft(pc, s)
	case ChannelGossip:
		e.deliverGossipStream(pc, s)
	case ChannelPacket:
		e.receivePacketStream(pc, s)
	}
}

// refuseStream resets s with code, counts frame refusals, and logs why (at
// most once a minute per peer and reason).
func (e *Endpoint) refuseStream(pc *peerConn, s *quic.Stream, code quic.StreamErrorCode, why string, err error) {
	switch code {
	case CodeFrameTooLarge:
		e.refused.largeFrames.Add(1)
	case CodeSlowFrame:
		e.refused.slowFrames.Add(1)
	}
	e.logRefusal(peerName(pc), "resetting peer stream: "+why, "remote", pc.conn.RemoteAddr().String(), "code", uint64(code), "err", err)
	resetStream(s, code)
}

// frameErrorCode maps a frame read error to the reset code telling the peer why.
func frameErrorCode(err error) (quic.StreamErrorCode, bool) {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return CodeFrameTooLarge, true
	case errors.Is(err, ErrBadFrame):
		return CodeBadFrame, true
	case errors.Is(err, ErrSlowFrame):
		return CodeSlowFrame, true
	}
	return CodeCanceled, false // peer reset or connection gone: nothing to report
}

// serveRPC serves unary calls on one long-lived stream, one at a time, until
// the client closes it (FIN) or resets it.
func (e *Endpoint) serveRPC(pc *peerConn, s *quic.Stream) {
	// A node's pooled stream may sit idle between calls, and its frame gets
	// FrameReadTimeout once started. A joiner without a certificate gets a
	// small frame, due in full within JoinIdleTimeout of the stream start
	// or of our last answer.
	maxFrame, idle, frameTimeout := e.cfg.MaxFrameSize, time.Duration(0), e.cfg.FrameReadTimeout
	if pc.join {
		maxFrame, idle, frameTimeout = e.cfg.MaxJoinFrameSize, e.cfg.JoinIdleTimeout, 0
	}
	var wbuf []byte // response buffer reused across this stream's calls
	for {
		frame, err := readFrameTimed(s, maxFrame, idle, frameTimeout)
		if errors.Is(err, io.EOF) {
			s.Close()
			return
		}
		if err != nil {
			if code, report := frameErrorCode(err); report {
				e.refuseStream(pc, s, code, "bad RPC frame", err)
			} else {
				resetStream(s, code)
			}
			return
		}
		hdr, body, err := parseRequest(frame)
		if err != nil {
			e.refuseStream(pc, s, CodeBadFrame, "bad RPC request header", err)
			return
		}
		resp := e.runHandler(pc, s, hdr, body, wbuf[:0])
		if _, err := s.Write(resp); err != nil {
			resetStream(s, CodeCanceled)
			return
		}
		if cap(resp) <= maxPooledBuf {
			wbuf = resp
		}
	}
}

// runHandler runs one call and returns the complete response frame. The
// handler's ctx ends when the client stops reading the stream (its cancel
// sends STOP_SENDING, which cancels s.Context()), on the request's deadline,
// or when the connection closes.
func (e *Endpoint) runHandler(pc *peerConn, s *quic.Stream, hdr requestHeader, body, b []byte) []byte {
	h := e.handler(hdr.Method, pc.join)
	if h == nil {
		e.log.Debug("unknown RPC method", "method", hdr.Method, "peer", pc.peer.ID.String())
		return statusFrame(status.Errorf(codes.Unimplemented, "unknown method %q", hdr.Method))
	}
	ctx := s.Context()
	if hdr.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, hdr.Timeout)
		defer cancel()
	}
	out, err := safeCall(ctx, h, pc.peer, body)
	if err != nil {
		return statusFrame(err)
	}
	if len(out)+1 > e.cfg.MaxFrameSize {
		return statusFrame(status.Errorf(codes.ResourceExhausted, "response to %s is %d bytes, limit %d", hdr.Method, len(out), e.cfg.MaxFrameSize))
	}
	b = appendFrameHeader(b, 1+len(out))
	b = append(b, kindMessage)
	return append(b, out...)
}

func handlerContext(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeout(parent, timeout)
	}
	return context.WithCancel(parent)
}

func safeCall(ctx context.Context, h Handler, p Peer, body []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = status.Errorf(codes.Internal, "handler panicked: %v", r)
		}
	}()
	return h(ctx, p, body)
}

func statusFrame(err error) []byte {
	st := encodeStatus(err)
	b := make([]byte, 0, frameHeaderLen+1+len(st))
	b = appendFrameHeader(b, 1+len(st))
	b = append(b, kindStatus)
	return append(b, st...)
}

// receiveDatagrams feeds the connection's QUIC datagrams to memberlist.
func (e *Endpoint) receiveDatagrams(pc *peerConn) {
	for {
		b, err := pc.conn.ReceiveDatagram(e.ctx)
		if err != nil {
			return
		}
		e.deliverPacket(b, pc.conn.RemoteAddr())
	}
}

// receivePacketStream reads one memberlist packet that was too large for a
// datagram.
func (e *Endpoint) receivePacketStream(pc *peerConn, s *quic.Stream) {
	b, err := readFrameTimed(s, e.cfg.MaxFrameSize, e.cfg.HandshakeTimeout, 0)
	if err != nil {
		if code, report := frameErrorCode(err); report {
			e.refuseStream(pc, s, code, "bad gossip packet frame", err)
		} else {
			resetStream(s, code)
		}
		return
	}
	s.Close()
	s.CancelRead(CodeNoError)
	e.deliverPacket(b, pc.conn.RemoteAddr())
}
