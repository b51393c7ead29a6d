package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Stream is the caller's side of a streaming call. Read it with Next and
// Chunk (or range over All); chunks arrive in order, numbered from 1.
// The mesh reads from the agent only as fast as Next is called, so a slow
// reader slows the handler rather than filling memory. Close it when done
// early: the handler is told to stop.
//
//	s, err := client.CallStream(ctx, "llm.generate", prompt)
//	if err != nil { ... }
//	defer s.Close()
//	for s.Next() {
//		os.Stdout.Write(s.Chunk())
//	}
//	if err := s.Err(); err != nil { ... } // LastSeq(err) says where it broke
type Stream struct {
	cs     grpc.ServerStreamingClient[meshnodev1.CallStreamResponse]
	cancel context.CancelFunc
	what   string
	chunk  *meshnodev1.StreamChunk
	end    *meshnodev1.StreamEnd
	err    error
}

// CallStream invokes capability and returns the stream of its answer.
// Deadlines, parent calls and options work as for Call. Errors that come
// before the first chunk may have been retried on other agents; after it,
// never.
func (c *Client) CallStream(ctx context.Context, capability string, payload []byte, opts ...CallOption) (*Stream, error) {
	req := c.callRequest(ctx, capability, payload, opts)
	ctx, cancel := context.WithCancel(ctx)
	cs, err := c.invoke.CallStream(ctx, req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("agent: call stream %q: %w", capability, err)
	}
	return &Stream{cs: cs, cancel: cancel, what: capability}, nil
}

// CallStream invokes a streaming capability as this agent (see
// Client.CallStream).
func (a *Agent) CallStream(ctx context.Context, capability string, payload []byte, opts ...CallOption) (*Stream, error) {
	c, err := a.Client()
	if err != nil {
		return nil, err
	}
	return c.CallStream(ctx, capability, payload, opts...)
}

// Next waits for the next chunk and reports whether there is one. It
// returns false at the end of the stream or on an error (see Err).
func (s *Stream) Next() bool {
	if s.err != nil || s.end != nil {
		return false
	}
	m, err := s.cs.Recv()
	switch {
	case errors.Is(err, io.EOF):
		s.err = fmt.Errorf("agent: call stream %q: the node ended the stream without its end", s.what)
		return false
	case err != nil:
		s.err = fmt.Errorf("agent: call stream %q: %w", s.what, err)
		return false
	}
	if end := m.GetEnd(); end != nil {
		s.end, s.chunk = end, nil
		s.cancel()
		return false
	}
	s.chunk = m.GetChunk()
	return true
}

// Chunk is the chunk Next moved to; it is the caller's to keep.
func (s *Stream) Chunk() []byte { return s.chunk.GetData() }

// Seq is the sequence number of the current chunk, from 1.
func (s *Stream) Seq() uint64 { return s.chunk.GetSeq() }

// End is the stream's closing message (agent, node, attempts, trace id,
// handler metadata), nil until Next returned false without an error.
func (s *Stream) End() *meshnodev1.StreamEnd { return s.end }

// Err is why the stream ended early, nil after a complete stream. Use
// status.Code on it, and LastSeq to know the last chunk received.
func (s *Stream) Err() error { return s.err }

// Close abandons the stream; the handler's ctx is cancelled.
func (s *Stream) Close() { s.cancel() }

// All ranges over the chunks. A failure is yielded last, with a nil chunk.
func (s *Stream) All() iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for s.Next() {
			if !yield(s.Chunk(), nil) {
				s.Close()
				return
			}
		}
		if s.err != nil {
			yield(nil, s.err)
		}
	}
}

// LastSeq returns the last chunk sequence a broken stream delivered, from
// the error's StreamBroken detail. ok is false for errors that carry none
// (those that came before the stream opened).
func LastSeq(err error) (seq uint64, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return 0, false
	}
	for _, d := range st.Details() {
		if b, isBroken := d.(*meshnodev1.StreamBroken); isBroken {
			return b.GetLastSeq(), true
		}
	}
	return 0, false
}
