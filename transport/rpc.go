package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Handler serves one unary RPC. Return errors built with
// google.golang.org/grpc/status: the caller gets the same code and message.
// ctx is canceled when the caller cancels, its deadline passes or the
// connection closes; handlers must then return, since Endpoint.Close waits
// for them. req may be retained.
type Handler func(ctx context.Context, peer Peer, req []byte) ([]byte, error)

// Handle registers h for method on node connections. Register before peers
// call; a later registration replaces an earlier one.
func (e *Endpoint) Handle(method string, h Handler) {
	e.hmu.Lock()
	e.handlers[method] = h
	e.hmu.Unlock()
}

// HandleJoin registers h for method on JoinALPN connections (peers without
// a certificate; Peer.ID is zero). Nothing else is served on them.
func (e *Endpoint) HandleJoin(method string, h Handler) {
	e.hmu.Lock()
	e.joinHandlers[method] = h
	e.hmu.Unlock()
}

func (e *Endpoint) handler(method string, join bool) Handler {
	e.hmu.RLock()
	defer e.hmu.RUnlock()
	if join {
		return e.joinHandlers[method]
	}
	return e.handlers[method]
}

// HandleProto registers a typed unary handler: the request is unmarshalled
// into newReq() and the response marshalled. A request that does not
// unmarshal gets codes.InvalidArgument.
func HandleProto[Req, Resp proto.Message](e *Endpoint, method string, newReq func() Req, h func(ctx context.Context, p Peer, req Req) (Resp, error)) {
	e.Handle(method, func(ctx context.Context, p Peer, b []byte) ([]byte, error) {
		req := newReq()
		if err := proto.Unmarshal(b, req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "decoding %s request: %v", method, err)
		}
		resp, err := h(ctx, p, req)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(resp)
	})
}

// Invoke calls method on the peer at addr with typed messages.
func Invoke(ctx context.Context, e *Endpoint, addr, method string, req, resp proto.Message) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return status.Errorf(codes.Internal, "encoding %s request: %v", method, err)
	}
	out, err := e.Call(ctx, addr, method, b)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(out, resp); err != nil {
		return status.Errorf(codes.Internal, "decoding %s response from %s: %v", method, addr, err)
	}
	return nil
}

// Call sends req to method on the peer at addr (its UDP host:port) and
// returns the response. Errors carry a gRPC status code: the handler's own,
// or Unavailable (no connection), Canceled/DeadlineExceeded (ctx),
// ResourceExhausted (frame too large), Unimplemented (unknown method).
func (e *Endpoint) Call(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	pc, err := e.pool.get(ctx, addr)
	if err != nil {
		return nil, wireError(ctx, fmt.Sprintf("connecting to %s for %s", addr, method), err)
	}
	return callOn(ctx, pc, e.callLimits(), method, req)
}

// callLimits bound the client side of a unary call.
type callLimits struct {
	maxFrame, maxIdle int
	frameTimeout      time.Duration
}

func (e *Endpoint) callLimits() callLimits {
	return callLimits{maxFrame: e.cfg.MaxFrameSize, maxIdle: e.cfg.MaxIdleRPCStreams, frameTimeout: e.cfg.FrameReadTimeout}
}

// callOn runs one unary call on a pooled long-lived stream. A stream carries
// one request at a time; on cancellation it is reset and discarded, since
// the server may still be writing a response nobody will read.
func callOn(ctx context.Context, pc *peerConn, lim callLimits, method string, req []byte) ([]byte, error) {
	maxFrame, maxIdle := lim.maxFrame, lim.maxIdle
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, status.Error(codes.DeadlineExceeded, "deadline passed before the call was sent")
		}
	}
	s, fresh, err := pc.takeStream(ctx)
	if err != nil {
		return nil, wireError(ctx, "opening RPC stream", err)
	}
	buf := s.buf[:0]
	if fresh {
		buf = append(buf, byte(ChannelRPC))
	}
	hdrAt := len(buf)
	buf = appendFrameHeader(buf, 0)
	buf = appendRequest(buf, requestHeader{Method: method, Timeout: timeout}, req)
	n := len(buf) - hdrAt - frameHeaderLen
	if n > maxFrame {
		pc.putStream(s, maxIdle, fresh)
		return nil, status.Errorf(codes.ResourceExhausted, "request for %s is %d bytes, limit %d", method, n, maxFrame)
	}
	appendFrameHeader(buf[:hdrAt], n)
	if cap(buf) <= maxPooledBuf {
		s.buf = buf
	}

	stop := noStop
	if ctx.Done() != nil { // a context that can never end needs no watcher
		stop = context.AfterFunc(ctx, func() { resetStream(s.Stream, CodeCanceled) })
	}
	resp, err := roundTrip(s.Stream, buf, maxFrame, lim.frameTimeout)
	if !stop() {
		return nil, wireError(ctx, "calling "+method, ctx.Err())
	}
	if err != nil {
		resetStream(s.Stream, CodeBadFrame)
		return nil, wireError(ctx, "calling "+method, err)
	}
	pc.putStream(s, maxIdle, false)
	return decodeResponse(resp)
}

// maxPooledBuf bounds the write buffer a pooled stream keeps between calls.
const maxPooledBuf = 64 << 10

func noStop() bool { return true }

func roundTrip(s *quic.Stream, req []byte, maxFrame int, frameTimeout time.Duration) ([]byte, error) {
	if _, err := s.Write(req); err != nil {
		return nil, err
	}
	// The handler may take its time; once its answer starts, it must come.
	resp, err := readFrameTimed(s, maxFrame, 0, frameTimeout)
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: stream closed before the response", ErrBadFrame)
	}
	return resp, err
}

func decodeResponse(resp []byte) ([]byte, error) {
	if len(resp) == 0 {
		return nil, status.Error(codes.Internal, "empty response frame")
	}
	switch resp[0] {
	case kindMessage:
		return resp[1:], nil
	case kindStatus:
		return nil, decodeStatus(resp[1:])
	}
	return nil, status.Errorf(codes.Internal, "unknown response kind %d", resp[0])
}

// DecodeStatus turns a marshalled google.rpc.Status into an error. It never
// returns nil: an OK or undecodable status becomes codes.Internal.
func decodeStatus(b []byte) error {
	var sp spb.Status
	if err := proto.Unmarshal(b, &sp); err != nil {
		return status.Errorf(codes.Internal, "undecodable error status from peer: %v", err)
	}
	if codes.Code(sp.GetCode()) == codes.OK {
		return status.Error(codes.Internal, "peer sent an error status with code OK")
	}
	return status.ErrorProto(&sp)
}

func encodeStatus(err error) []byte {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		st = status.New(codes.Unknown, err.Error())
	}
	b, merr := proto.Marshal(st.Proto())
	if merr != nil {
		b, _ = proto.Marshal(status.New(codes.Internal, "unencodable error").Proto())
	}
	return b
}

// takeStream returns an idle stream (fresh=false) or opens one (fresh=true:
// the caller must write the channel tag first).
func (pc *peerConn) takeStream(ctx context.Context) (*rpcStream, bool, error) {
	pc.idleMu.Lock()
	if n := len(pc.idle); n > 0 {
		s := pc.idle[n-1]
		pc.idle = pc.idle[:n-1]
		pc.idleMu.Unlock()
		return s, false, nil
	}
	pc.idleMu.Unlock()
	s, err := pc.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, true, err
	}
	return &rpcStream{Stream: s}, true, nil
}

// putStream returns a stream after a completed call. Surplus streams are
// closed gracefully (FIN); the server answers with its own FIN, which frees
// the stream slot on both sides. A fresh stream that never carried its tag
// is closed the same way, which the server reads as a clean EOF.
func (pc *peerConn) putStream(s *rpcStream, maxIdle int, unused bool) {
	if !unused {
		pc.idleMu.Lock()
		if len(pc.idle) < maxIdle {
			pc.idle = append(pc.idle, s)
			pc.idleMu.Unlock()
			return
		}
		pc.idleMu.Unlock()
	}
	s.Close()
	s.CancelRead(CodeNoError)
}

func resetStream(s *quic.Stream, code quic.StreamErrorCode) {
	s.CancelWrite(code)
	s.CancelRead(code)
}

// callError carries a gRPC status for transport-level failures while still
// unwrapping to the cause (ErrPeerUnavailable, context.Canceled, ...).
type callError struct {
	st  *status.Status
	err error
}

func (c *callError) Error() string              { return c.st.Message() }
func (c *callError) Unwrap() error              { return c.err }
func (c *callError) GRPCStatus() *status.Status { return c.st }

func wireError(ctx context.Context, doing string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	code := codes.Unavailable
	switch {
	case errors.Is(err, ErrPeerUnavailable): // even when the dial itself timed out
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, ErrFrameTooLarge):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrBadFrame):
		code = codes.Internal
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode == CodeFrameTooLarge {
		code = codes.ResourceExhausted
	}
	return &callError{st: status.New(code, fmt.Sprintf("%s: %v", doing, err)), err: err}
}
