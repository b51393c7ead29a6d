package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// A streaming call's answer flows agent → pipe → Reply. The pipe is a
// bounded channel of ChunkBuffer frames: when the caller reads slowly the
// channel fills, SendFrame blocks, the agent's StreamRespond is not read,
// and HTTP/2 flow control makes the agent's own Send wait. Nothing queues
// without bound.
type chunkPipe struct {
	agentID string
	frames  chan *meshnodev1.StreamFrame
	gone    chan struct{} // closed when the Reply is closed: nobody reads any more

	// Producers (one StreamRespond stream, or SendChunk calls) are
	// serialised by sendMu, which also guards next and ended.
	sendMu chan struct{}
	next   uint64 // the sequence number due
	ended  bool   // an end or error frame was taken
}

// Reply is the caller's side of a streaming delivery: Next returns its
// frames in order. Close it when done; it withdraws the call from the
// agent if the stream did not end.
type Reply struct {
	h       *Hub
	agentID string
	callID  string
	s       *stream
	w       *waiter[*meshnodev1.RespondRequest]
	p       *chunkPipe
	release func()
	pending []*meshnodev1.StreamFrame // a unary Respond, turned into frames
	ended   bool
	closed  sync.Once
}

// DeliverStream pushes a streaming call onto the agent's Serve stream and
// returns the Reply its frames arrive on. Like Deliver, it sets d.CallId
// and counts against the agent's in-flight limit until Close.
func (h *Hub) DeliverStream(ctx context.Context, agentID string, d *meshnodev1.Delivery, cc CallContext) (*Reply, error) {
	d.Streaming = true
	h.setCallID(d)
	p := &chunkPipe{agentID: agentID, frames: make(chan *meshnodev1.StreamFrame, h.cfg.ChunkBuffer),
		gone: make(chan struct{}), sendMu: make(chan struct{}, 1), next: 1}
	// The pipe exists before the agent hears of the call, so its first
	// frame always finds it.
	h.pipeMu.Lock()
	if _, dup := h.pipes[d.CallId]; dup {
		h.pipeMu.Unlock()
		return nil, errorf(ErrDuplicateRequest, "call id %q is already pending; use a new id", d.CallId)
	}
	h.pipes[d.CallId] = p
	h.pipeMu.Unlock()
	s, w, release, err := h.begin(ctx, agentID, d, cc)
	if err != nil {
		h.dropPipe(d.CallId)
		return nil, err
	}
	return &Reply{h: h, agentID: agentID, callID: d.CallId, s: s, w: w, p: p, release: release}, nil
}

func (h *Hub) dropPipe(callID string) {
	h.pipeMu.Lock()
	delete(h.pipes, callID)
	h.pipeMu.Unlock()
}

// CallID is the id the call was delivered under.
func (r *Reply) CallID() string { return r.callID }

// Next waits for the stream's next frame: a chunk, the end or the agent's
// error. After an end or error frame the stream is over. It fails when the
// agent stops serving, or when ctx ends (the handler is then told to stop).
func (r *Reply) Next(ctx context.Context) (*meshnodev1.StreamFrame, error) {
	if len(r.pending) > 0 {
		f := r.pending[0]
		r.pending = r.pending[1:]
		return r.seen(f), nil
	}
	select {
	case f := <-r.p.frames:
		return r.seen(f), nil
	case ans := <-r.w.answer:
		r.pending = unaryFrames(ans, r.p)
		return r.Next(ctx)
	case <-r.s.done:
		return nil, errorf(ErrNotServing, "agent %s stopped serving while streaming call %s", r.agentID, r.callID)
	case <-ctx.Done():
		return nil, ctxError(ctx, "streaming from "+r.agentID)
	}
}

func (r *Reply) seen(f *meshnodev1.StreamFrame) *meshnodev1.StreamFrame {
	if f.GetChunk() == nil {
		r.ended = true
	}
	return f
}

// unaryFrames turns a unary answer to a streaming call into frames: its
// payload as the next chunk (if any), then the end; an error as itself.
func unaryFrames(ans *meshnodev1.RespondRequest, p *chunkPipe) []*meshnodev1.StreamFrame {
	if e := ans.GetError(); e != nil {
		return []*meshnodev1.StreamFrame{{Frame: &meshnodev1.StreamFrame_Error{Error: e}}}
	}
	ok := ans.GetOk()
	end := &meshnodev1.StreamFrame{Frame: &meshnodev1.StreamFrame_End{End: &meshnodev1.CallResult{Metadata: ok.GetMetadata()}}}
	if len(ok.GetPayload()) == 0 {
		return []*meshnodev1.StreamFrame{end}
	}
	p.sendMu <- struct{}{}
	seq := p.next
	p.next++
	p.ended = true
	<-p.sendMu
	chunk := &meshnodev1.StreamFrame{Frame: &meshnodev1.StreamFrame_Chunk{Chunk: &meshnodev1.StreamChunk{Seq: seq, Data: ok.GetPayload()}}}
	return []*meshnodev1.StreamFrame{chunk, end}
}

// Close ends the consumer's side: a producer blocked on a full pipe fails
// with Canceled, and a handler still streaming is told to stop. It is safe
// to call more than once.
func (r *Reply) Close() {
	r.closed.Do(func() {
		close(r.p.gone)
		r.h.dropPipe(r.callID)
		if !r.ended {
			r.h.withdraw(r.s, r.callID, "the caller stopped reading the stream")
		}
		r.release()
	})
}

// SendFrame hands one frame of a streaming answer from agentID to the
// call's Reply, waiting while the pipe is full. Sequence numbers must go
// up by one from 1; a chunk over the payload limit or out of sequence ends
// the call's stream with an error the caller sees, and is refused.
func (h *Hub) SendFrame(ctx context.Context, agentID, callID string, f *meshnodev1.StreamFrame) error {
	h.pipeMu.Lock()
	p := h.pipes[callID]
	h.pipeMu.Unlock()
	if p == nil || p.agentID != agentID {
		return errorf(ErrCallNotPending, "streaming call %q is not pending for agent %s: it ended, was cancelled or timed out", callID, agentID)
	}
	select {
	case p.sendMu <- struct{}{}:
	case <-p.gone:
		return errorf(context.Canceled, "the caller stopped reading call %s", callID)
	case <-ctx.Done():
		return ctxError(ctx, "sending on call "+callID)
	}
	defer func() { <-p.sendMu }()
	if p.ended {
		return errorf(ErrCallNotPending, "streaming call %q already ended; nothing may follow its end or error frame", callID)
	}
	refused := h.checkFrame(p, agentID, callID, f)
	if refused != nil {
		st := status.Convert(refused)
		f = &meshnodev1.StreamFrame{Frame: &meshnodev1.StreamFrame_Error{Error: &meshnodev1.CallError{Code: uint32(st.Code()), Message: st.Message()}}}
	}
	if f.GetChunk() != nil {
		p.next++
	} else {
		p.ended = true
	}
	select {
	case p.frames <- f:
		return refused
	case <-p.gone:
		return errorf(context.Canceled, "the caller stopped reading call %s", callID)
	case <-ctx.Done():
		return ctxError(ctx, "sending on call "+callID)
	}
}

// checkFrame says why a frame may not go on (nil: it may).
func (h *Hub) checkFrame(p *chunkPipe, agentID, callID string, f *meshnodev1.StreamFrame) error {
	switch fr := f.GetFrame().(type) {
	case *meshnodev1.StreamFrame_Chunk:
		if seq := fr.Chunk.GetSeq(); seq != p.next {
			return errorf(ErrBadChunk, "agent %s sent chunk %d of call %s where chunk %d was due; sequence numbers start at 1 and go up by one", agentID, seq, callID, p.next)
		}
		if n := len(fr.Chunk.GetData()); h.cfg.MaxPayload > 0 && n > h.cfg.MaxPayload {
			return errorf(ErrChunkTooLarge, "chunk %d of call %s from agent %s is %d bytes, over node %s's payload limit of %d (max_payload)", p.next, callID, agentID, n, h.cfg.Node, h.cfg.MaxPayload)
		}
	case *meshnodev1.StreamFrame_End, *meshnodev1.StreamFrame_Error:
	default:
		return errorf(ErrBadChunk, "an empty frame for call %s; send a chunk, end or error", callID)
	}
	return nil
}

// abortStream ends a streaming call whose agent side broke off before its
// end frame: the caller hears why instead of waiting out its deadline.
func (h *Hub) abortStream(ctx context.Context, agentID, callID string, cause error) {
	st := status.Convert(cause)
	code := st.Code()
	if code == codes.OK || code == codes.Unknown {
		code = codes.Internal
	}
	f := &meshnodev1.StreamFrame{Frame: &meshnodev1.StreamFrame_Error{Error: &meshnodev1.CallError{Code: uint32(code),
		Message: fmt.Sprintf("agent %s's stream for call %s broke off before its end: %s", agentID, callID, st.Message())}}}
	// The Reply reads until its end, closes when its caller goes, and the
	// stream's own context bounds the wait otherwise.
	_ = h.SendFrame(context.WithoutCancel(ctx), agentID, callID, f)
}

// ChunkStream is the server side of a StreamRespond stream (grpc-go's
// ClientStreamingServer[StreamRespondRequest, StreamRespondResponse] is
// one).
type ChunkStream interface {
	Context() context.Context
	Recv() (*meshnodev1.StreamRespondRequest, error)
	SendAndClose(*meshnodev1.StreamRespondResponse) error
}

// ServeChunks runs one StreamRespond stream for its owner o: the frames of
// one call, read one at a time as the caller makes room for them.
func (h *Hub) ServeChunks(o Owner, st ChunkStream) error {
	ctx := st.Context()
	var agentID, callID string
	ended := false
	for {
		m, err := st.Recv()
		if err != nil {
			if callID != "" && !ended {
				if errors.Is(err, io.EOF) {
					err = status.Error(codes.Internal, "the agent closed its stream without an end or error frame")
				}
				h.abortStream(ctx, agentID, callID, err)
			}
			if errors.Is(err, io.EOF) {
				return st.SendAndClose(&meshnodev1.StreamRespondResponse{})
			}
			return err
		}
		if callID == "" {
			agentID, callID = h.AgentID(m.GetAgentId()), m.GetCallId()
			if err := h.Owned(agentID, o); err != nil {
				return err
			}
		} else if m.GetCallId() != "" && m.GetCallId() != callID {
			return errorf(ErrBadChunk, "a StreamRespond stream carries one call (%s); open another for call %s", callID, m.GetCallId())
		}
		if err := h.SendFrame(ctx, agentID, callID, m.GetFrame()); err != nil {
			return err
		}
		ended = m.GetFrame().GetChunk() == nil
	}
}

// SendChunk is one frame from an agent that cannot stream to the node
// (Connect JSON over HTTP/1.1); it returns once the caller has room.
func (h *Hub) SendChunk(ctx context.Context, o Owner, m *meshnodev1.StreamRespondRequest) error {
	id := h.AgentID(m.GetAgentId())
	if err := h.Owned(id, o); err != nil {
		return err
	}
	return h.SendFrame(ctx, id, m.GetCallId(), m.GetFrame())
}
