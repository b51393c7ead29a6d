package hub

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// openStreamCall delivers a streaming call to a and returns its Reply and
// the call id the agent saw.
func openStreamCall(t *testing.T, h *Hub, a *fakeAgent) (*Reply, string) {
	t.Helper()
	r, err := h.DeliverStream(context.Background(), a.id, &meshnodev1.Delivery{Capability: "c"}, CallContext{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	d := a.next(t).GetCall()
	if !d.GetStreaming() || d.GetCallId() != r.CallID() {
		t.Fatalf("delivery %v: want a streaming call with id %s", d, r.CallID())
	}
	return r, d.GetCallId()
}

func chunk(seq uint64, data string) *meshnodev1.StreamFrame {
	return &meshnodev1.StreamFrame{Frame: &meshnodev1.StreamFrame_Chunk{Chunk: &meshnodev1.StreamChunk{Seq: seq, Data: []byte(data)}}}
}

// TestUnaryAnswerToStreamingCall: an agent that answers a streaming call
// with Respond (an SDK without streaming) gives one chunk and the end.
func TestUnaryAnswerToStreamingCall(t *testing.T) {
	h := newTestHub(t, Config{})
	a := serve(t, h, alice, "a", 0)
	r, id := openStreamCall(t, h, a)
	if err := h.Respond(a.id, &meshnodev1.RespondRequest{CallId: id, Result: &meshnodev1.RespondRequest_Ok{Ok: &meshnodev1.CallResult{Payload: []byte("all")}}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f1, err := r.Next(ctx)
	if err != nil || f1.GetChunk().GetSeq() != 1 || string(f1.GetChunk().GetData()) != "all" {
		t.Fatalf("first frame %v, %v", f1, err)
	}
	if f2, err := r.Next(ctx); err != nil || f2.GetEnd() == nil {
		t.Fatalf("second frame %v, %v; want the end", f2, err)
	}
}

// TestStreamFramesOutOfProtocol: a wrong sequence number or an oversized
// chunk ends the stream with an error frame the caller reads, and the
// agent is refused with the matching code; nothing follows.
func TestStreamFramesOutOfProtocol(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  *meshnodev1.StreamFrame
		kind error
		code codes.Code
	}{
		{"sequence gap", chunk(3, "x"), ErrBadChunk, codes.InvalidArgument},
		{"over the payload limit", chunk(2, "0123456789"), ErrChunkTooLarge, codes.ResourceExhausted},
		{"empty frame", &meshnodev1.StreamFrame{}, ErrBadChunk, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHub(t, Config{MaxPayload: 8})
			a := serve(t, h, alice, "a", 0)
			r, id := openStreamCall(t, h, a)
			ctx := context.Background()
			if err := h.SendFrame(ctx, a.id, id, chunk(1, "ok")); err != nil {
				t.Fatal(err)
			}
			wantErr(t, tc.name, h.SendFrame(ctx, a.id, id, tc.bad), tc.kind, tc.code)
			if f, _ := r.Next(ctx); f.GetChunk().GetSeq() != 1 {
				t.Fatalf("first frame %v", f)
			}
			f, err := r.Next(ctx)
			if err != nil || codes.Code(f.GetError().GetCode()) != tc.code {
				t.Fatalf("frame after the bad one: %v, %v; want an error frame with %v", f, err, tc.code)
			}
			wantErr(t, "a frame after the end", h.SendFrame(ctx, a.id, id, chunk(2, "late")), ErrCallNotPending, codes.NotFound)
			wantErr(t, "another agent's frame", h.SendFrame(ctx, "n1/other", id, chunk(2, "x")), ErrCallNotPending, codes.NotFound)
		})
	}
}

// TestSlowCallerBlocksSendFrame: with the pipe full, SendFrame waits; the
// caller's Close releases it with Canceled.
func TestSlowCallerBlocksSendFrame(t *testing.T) {
	h := newTestHub(t, Config{ChunkBuffer: 2})
	a := serve(t, h, alice, "a", 0)
	r, id := openStreamCall(t, h, a)
	ctx := context.Background()
	for seq := uint64(1); seq <= 2; seq++ {
		if err := h.SendFrame(ctx, a.id, id, chunk(seq, "x")); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- h.SendFrame(ctx, a.id, id, chunk(3, "x")) }()
	select {
	case err := <-blocked:
		t.Fatalf("SendFrame on a full pipe returned %v instead of waiting", err)
	case <-time.After(100 * time.Millisecond):
	}
	r.Close()
	select {
	case err := <-blocked:
		wantErr(t, "send after the caller left", err, context.Canceled, codes.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("SendFrame still blocked after the caller closed")
	}
	if ev := a.next(t); ev.GetCancel().GetCallId() != id {
		t.Fatalf("agent heard %v, want the call withdrawn", ev)
	}
}

// FuzzSendFrame feeds an agent's arbitrary frames (untrusted bytes) to a
// streaming call: whatever arrives, the caller reads consecutive chunks
// from 1, each within the payload limit, and at most one final frame,
// last.
func FuzzSendFrame(f *testing.F) {
	seed := func(frames ...*meshnodev1.StreamFrame) []byte {
		var b []byte
		for _, fr := range frames {
			m, _ := proto.Marshal(fr)
			b = protowire.AppendBytes(b, m)
		}
		return b
	}
	f.Add(seed(chunk(1, "a"), chunk(2, "b"), &meshnodev1.StreamFrame{Frame: &meshnodev1.StreamFrame_End{End: &meshnodev1.CallResult{}}}))
	f.Add(seed(chunk(2, "a"), chunk(1, "0123456789abcdef")))
	f.Add([]byte{0x03, 0x0a, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newTestHub(t, Config{MaxPayload: 8, ChunkBuffer: 64})
		a := serve(t, h, alice, "a", 0)
		r, id := openStreamCall(t, h, a)
		ctx := context.Background()
		sent := 0
		for len(data) > 0 && sent < 32 {
			m, n := protowire.ConsumeBytes(data)
			if n < 0 {
				break
			}
			data = data[n:]
			fr := &meshnodev1.StreamFrame{}
			if proto.Unmarshal(m, fr) != nil {
				continue
			}
			if h.SendFrame(ctx, a.id, id, fr) == nil || fr.GetChunk() == nil {
				sent++
			}
		}
		var next uint64 = 1
		for {
			rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			got, err := r.Next(rctx)
			cancel()
			if err != nil {
				return // nothing more was taken
			}
			if c := got.GetChunk(); c != nil {
				if c.GetSeq() != next || len(c.GetData()) > 8 {
					t.Fatalf("chunk seq %d (%d bytes) read where %d was due", c.GetSeq(), len(c.GetData()), next)
				}
				next++
				continue
			}
			rctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
			extra, err := r.Next(rctx)
			cancel()
			if err == nil {
				t.Fatalf("frame %v after the final frame %v", extra, got)
			}
			return
		}
	})
}
