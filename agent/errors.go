package agent

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNoHandlers is returned by Serve and Register when nothing was added
	// with Handle or HandleVote: an agent that serves nothing cannot be
	// routed to.
	ErrNoHandlers = errors.New("agent: nothing to serve: call Handle or HandleVote before Register or Serve")
	// ErrNodeUnreachable is returned by Dial when nothing listens on the
	// socket. The message says how to start a node or point at one.
	ErrNodeUnreachable = errors.New("agent: meshnode socket unreachable")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("agent: closed")
)

// Error is the error a handler returns to choose the gRPC code the caller
// sees and whether the mesh may retry the call on another agent. Any other
// error is reported as codes.Unknown and is not retried, except that gRPC
// status errors keep their code and context errors map to Canceled and
// DeadlineExceeded.
type Error struct {
	// Code is the gRPC status code the caller receives.
	Code codes.Code
	// Message is the human-readable reason.
	Message string
	// Retryable says another agent (or a later attempt) may succeed, so the
	// mesh may retry within the caller's retry budget and deadline.
	Retryable bool
}

// Errorf returns a non-retryable *Error with a formatted message.
func Errorf(code codes.Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RetryableErrorf returns a retryable *Error with a formatted message.
func RetryableErrorf(code codes.Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Retryable: true}
}

func (e *Error) Error() string {
	if e.Retryable {
		return fmt.Sprintf("%s (retryable): %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// GRPCStatus lets status.Code and status.FromError see through an *Error.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// toCallError maps a handler's error onto the wire. The rules are the
// handler contract documented in docs/sdk.md; keep them in sync.
func toCallError(err error) *meshnodev1.CallError {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return &meshnodev1.CallError{Code: uint32(ae.Code), Message: ae.Message, Retryable: ae.Retryable}
	case errors.Is(err, context.DeadlineExceeded):
		return &meshnodev1.CallError{Code: uint32(codes.DeadlineExceeded), Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return &meshnodev1.CallError{Code: uint32(codes.Canceled), Message: err.Error()}
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		// Unavailable means "not now, try elsewhere" in gRPC's own contract.
		return &meshnodev1.CallError{Code: uint32(s.Code()), Message: s.Message(), Retryable: s.Code() == codes.Unavailable}
	}
	return &meshnodev1.CallError{Code: uint32(codes.Unknown), Message: err.Error()}
}

// permanent reports whether a failed Register or Serve should stop Serve
// instead of being retried: the node understood the request and refused it,
// so retrying would only repeat the refusal.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.AlreadyExists,
		codes.Unauthenticated, codes.Unimplemented, codes.OutOfRange:
		return true
	}
	return false
}
