package consensus

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Network is what consensus needs from the peer transport. The node passes
// an adapter over the transport's QUIC endpoint (see NetworkFromTransport in
// the lead's wiring); tests may use any implementation with the same
// contract. Errors from Call and OpenStream are gRPC status errors.
type Network interface {
	// StreamLayer carries Raft connections (servers only; clients may
	// return nil).
	StreamLayer() raft.StreamLayer
	// Call sends one request to the node at addr and waits for its answer.
	Call(ctx context.Context, addr, method string, req []byte) ([]byte, error)
	// Handle serves unary calls of method. Handlers run concurrently.
	Handle(method string, h Handler)
	// OpenStream opens a bidirectional message stream to method at addr.
	OpenStream(ctx context.Context, addr, method string) (Stream, error)
	// HandleStream serves streams of method. Returning ends the stream.
	HandleStream(method string, h StreamHandler)
}

// Handler serves one unary call from the peer node named peer.
type Handler func(ctx context.Context, peer string, req []byte) ([]byte, error)

// StreamHandler serves one stream from the peer node named peer.
type StreamHandler func(ctx context.Context, peer string, s Stream) error

// Stream is a bidirectional stream of protobuf messages.
type Stream interface {
	Send(m proto.Message) error
	Recv(m proto.Message) error
	CloseSend() error
	Close() error
}

// Peer RPC method names. They are part of the wire protocol.
const (
	MethodApply     = "consensus.Apply"
	MethodReadIndex = "consensus.ReadIndex"
	MethodStats     = "consensus.Stats"
	MethodServers   = "consensus.Servers"
	MethodSubscribe = "consensus.Subscribe"
)

// call marshals req, calls method at addr and unmarshals into resp.
func call(ctx context.Context, n Network, addr, method string, req, resp proto.Message) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return status.Errorf(codes.Internal, "encoding %s request: %v", method, err)
	}
	out, err := n.Call(ctx, addr, method, b)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(out, resp); err != nil {
		return status.Errorf(codes.Internal, "decoding %s response from %s: %v", method, addr, err)
	}
	return nil
}

// toStatus maps consensus errors onto status codes for the wire, so the
// caller can tell retryable conditions from final ones.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader), errors.Is(err, ErrClosed), errors.Is(err, ErrNotReady):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrInvalidCommand), errors.Is(err, ErrUnknownVersion):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrServerOnly):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrStorage):
		return status.Error(codes.Internal, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}

// retryable reports whether a forwarded operation may be retried, possibly
// against another server: the leader moved, or the peer was unreachable.
func retryable(err error) bool {
	if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.Aborted:
		return true
	}
	return false
}

// fromStatus maps a peer's status error back onto a sentinel.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.InvalidArgument:
		return errors.Join(ErrInvalidCommand, err)
	case codes.PermissionDenied:
		return errors.Join(ErrServerOnly, err)
	}
	return err
}
