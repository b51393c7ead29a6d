package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// StreamHandlerFunc serves one call whose answer is a stream of chunks.
// Each send passes one chunk to the caller, in order. send blocks while the
// caller (or any leg between) has no room: that is the stream's
// backpressure, and a slow caller slows the handler instead of filling
// memory. send returns an error once the call is over for the caller
// (cancelled, deadline passed, the node refused the chunk): the handler
// should then return. send is not safe for concurrent use.
//
// Returning nil ends the stream successfully; an error ends it with that
// error (see Error), after the chunks already sent. The same ctx rules as
// HandlerFunc apply.
type StreamHandlerFunc func(ctx context.Context, req *Request, send func(chunk []byte) error) error

// HandleStream adds a capability served by a streaming handler. Callers
// using CallStream get the chunks as they are sent; a unary Call gets them
// concatenated as one payload (up to the node's message limit). Like
// Handle, it panics on an empty name, a nil handler or a duplicate.
func (a *Agent) HandleStream(capability Capability, h StreamHandlerFunc) {
	if capability.Name == "" || h == nil {
		panic("agent: HandleStream needs a capability name and a non-nil handler")
	}
	a.add(&handler{capability: capability, stream: h})
}

// errStreamed: the handler's answer went out on its StreamRespond stream,
// so there is nothing left to Respond.
var errStreamed = errors.New("agent: answered on the stream")

// call runs the capability's handler for one delivery. A unary handler's
// answer to a streaming caller is sent with Respond, which the node takes
// as one chunk and the end.
func (s *server) call(ctx context.Context, h *handler, req *Request, streaming bool) (*Response, error) {
	switch {
	case h.stream == nil:
		return h.fn(ctx, req)
	case !streaming:
		return s.collect(ctx, h.stream, req)
	}
	return nil, s.streamAnswer(ctx, h.stream, req)
}

// collect answers a unary caller of a streaming handler with its chunks
// joined, refusing to grow past what the agent can send in one message.
func (s *server) collect(ctx context.Context, fn StreamHandlerFunc, req *Request) (*Response, error) {
	var buf bytes.Buffer
	err := fn(ctx, req, func(chunk []byte) error {
		if buf.Len()+len(chunk) > maxMessageSize {
			return Errorf(codes.ResourceExhausted, "the joined chunks pass %d bytes; call with CallStream instead", maxMessageSize)
		}
		buf.Write(chunk)
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	return &Response{Payload: buf.Bytes()}, nil
}

// streamAnswer runs a streaming handler on its own StreamRespond stream.
// The stream lives on the handler's ctx: when the caller gives up the node
// withdraws the call, ctx ends, and a send blocked on flow control returns.
func (s *server) streamAnswer(ctx context.Context, fn StreamHandlerFunc, req *Request) error {
	cs, err := s.a.client.invoke.StreamRespond(ctx)
	if err != nil {
		return fmt.Errorf("agent: open the answer stream for call %s: %w", req.CallID, err)
	}
	w := &chunkWriter{cs: cs, ctx: ctx, agentID: s.a.ID(), callID: req.CallID}
	herr := fn(ctx, req, w.send)
	if w.err != nil {
		// The node ended the stream (or ctx did); it told the caller.
		return errStreamed
	}
	final := &meshnodev1.StreamFrame{Frame: &meshnodev1.StreamFrame_End{End: &meshnodev1.CallResult{}}}
	if herr != nil {
		final.Frame = &meshnodev1.StreamFrame_Error{Error: toCallError(herr)}
	}
	if err := w.write(final); err != nil {
		s.a.log.Warn("could not end a streamed answer; the caller sees a failure", "call_id", req.CallID, "err", err)
		return errStreamed
	}
	if _, err := cs.CloseAndRecv(); err != nil && !errors.Is(err, io.EOF) {
		s.a.log.Warn("the node did not take a streamed answer's end", "call_id", req.CallID, "err", err)
	}
	return errStreamed
}

// chunkWriter numbers a handler's chunks and sends them.
type chunkWriter struct {
	cs      grpc.ClientStreamingClient[meshnodev1.StreamRespondRequest, meshnodev1.StreamRespondResponse]
	ctx     context.Context
	agentID string
	callID  string
	seq     uint64
	err     error // sticky: once a send failed, every later one does
}

func (w *chunkWriter) send(chunk []byte) error {
	if w.err == nil && w.ctx.Err() != nil {
		w.err = fmt.Errorf("agent: call %s: %w", w.callID, context.Cause(w.ctx))
	}
	if w.err != nil {
		return w.err
	}
	w.seq++
	return w.write(&meshnodev1.StreamFrame{Frame: &meshnodev1.StreamFrame_Chunk{Chunk: &meshnodev1.StreamChunk{Seq: w.seq, Data: chunk}}})
}

// write sends one frame; the ids ride on the first only.
func (w *chunkWriter) write(f *meshnodev1.StreamFrame) error {
	m := &meshnodev1.StreamRespondRequest{Frame: f}
	if w.seq <= 1 {
		m.AgentId, m.CallId = w.agentID, w.callID
	}
	if err := w.cs.Send(m); err != nil {
		// Send reports io.EOF when the stream ended; the reason is in
		// the status that CloseAndRecv returns.
		if errors.Is(err, io.EOF) {
			if _, rerr := w.cs.CloseAndRecv(); rerr != nil {
				err = rerr
			}
		}
		w.err = fmt.Errorf("agent: stream answer for call %s: %w", w.callID, err)
		return w.err
	}
	return nil
}
