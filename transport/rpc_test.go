package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRPCRoundTrip(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	var gotPeer transport.Peer
	var mu sync.Mutex
	b.Handle("echo", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		mu.Lock()
		gotPeer = p
		mu.Unlock()
		return append([]byte("echo:"), req...), nil
	})
	b.Handle("fail", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		return nil, status.Error(codes.FailedPrecondition, "not today")
	})
	ctx := ctxT(t)
	for i := range 5 { // reuses the pooled stream
		resp, err := a.Call(ctx, b.Addr().String(), "echo", []byte{byte(i)})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if !bytes.Equal(resp, append([]byte("echo:"), byte(i))) {
			t.Fatalf("call %d: got %q", i, resp)
		}
	}
	mu.Lock()
	if want := pki.NodeID(transporttest.TrustDomain, "a"); gotPeer.ID != want {
		t.Errorf("handler saw peer %v, want %v", gotPeer.ID, want)
	}
	mu.Unlock()
	_, err := a.Call(ctx, b.Addr().String(), "fail", nil)
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != "not today" {
		t.Errorf("fail: got %v", err)
	}
	_, err = a.Call(ctx, b.Addr().String(), "nope", nil)
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: got %v, want Unimplemented", err)
	}
	// The connection still serves after an error and an unknown method; and
	// the reverse direction reuses b's accepted connection.
	a.Handle("ping", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) { return []byte("pong"), nil })
	if resp, err := b.Call(ctx, a.Addr().String(), "ping", nil); err != nil || string(resp) != "pong" {
		t.Fatalf("reverse call: %q %v", resp, err)
	}
}

func TestInvokeProto(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	transport.HandleProto(b, "upper", func() *wrapperspb.StringValue { return new(wrapperspb.StringValue) },
		func(ctx context.Context, p transport.Peer, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return wrapperspb.String(req.GetValue() + "!"), nil
		})
	var resp wrapperspb.StringValue
	if err := transport.Invoke(ctxT(t), a, b.Addr().String(), "upper", wrapperspb.String("hi"), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.GetValue() != "hi!" {
		t.Fatalf("got %q", resp.GetValue())
	}
}

func TestRPCCancellationReachesHandler(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	started := make(chan struct{})
	handlerDone := make(chan error, 1)
	b.Handle("block", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		handlerDone <- ctx.Err()
		return nil, ctx.Err()
	})
	b.Handle("ok", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) { return req, nil })
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		_, err := a.Call(ctx, b.Addr().String(), "block", nil)
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled || !errors.Is(err, context.Canceled) {
		t.Errorf("caller got %v, want Canceled", err)
	}
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Error("handler ctx not canceled")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancellation never reached the remote handler")
	}
	// The connection keeps working after a reset stream.
	if resp, err := a.Call(ctxT(t), b.Addr().String(), "ok", []byte("x")); err != nil || string(resp) != "x" {
		t.Fatalf("after cancel: %q %v", resp, err)
	}
}

func TestRPCDeadlineTravels(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	got := make(chan time.Duration, 1)
	b.Handle("dl", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			got <- -1
		} else {
			got <- time.Until(dl)
		}
		return nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := a.Call(ctx, b.Addr().String(), "dl", nil); err != nil {
		t.Fatal(err)
	}
	if d := <-got; d <= 0 || d > 3*time.Second {
		t.Fatalf("handler deadline in %v, want (0, 3s]", d)
	}
}

func TestStreamRPC(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	b.HandleStream("count", func(ctx context.Context, p transport.Peer, s *transport.Stream) error {
		var n wrapperspb.Int64Value
		if err := s.Recv(&n); err != nil {
			return err
		}
		for i := range n.GetValue() {
			if err := s.Send(wrapperspb.Int64(i)); err != nil {
				return err
			}
		}
		return status.Error(codes.Aborted, "done counting")
	})
	s, err := a.OpenStream(ctxT(t), b.Addr().String(), "count")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(wrapperspb.Int64(3)); err != nil {
		t.Fatal(err)
	}
	for i := range int64(3) {
		var m wrapperspb.Int64Value
		if err := s.Recv(&m); err != nil || m.GetValue() != i {
			t.Fatalf("recv %d: %v %v", i, m.GetValue(), err)
		}
	}
	var m wrapperspb.Int64Value
	if err := s.Recv(&m); status.Code(err) != codes.Aborted {
		t.Fatalf("final recv: %v, want Aborted", err)
	}

	b.HandleStream("empty", func(ctx context.Context, p transport.Peer, s *transport.Stream) error { return nil })
	s2, err := a.OpenStream(ctxT(t), b.Addr().String(), "empty")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Recv(&m); !errors.Is(err, io.EOF) {
		t.Fatalf("empty stream: %v, want EOF", err)
	}
	s3, err := a.OpenStream(ctxT(t), b.Addr().String(), "missing")
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if err := s3.Recv(&m); status.Code(err) != codes.Unimplemented {
		t.Fatalf("missing stream method: %v", err)
	}
}
