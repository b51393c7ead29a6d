package hub

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Every error the hub returns wraps one of them in an
// *Error that carries a message for the agent.
var (
	// ErrNotRegistered: the agent id is not registered on this node.
	ErrNotRegistered = errors.New("agent is not registered on this node")
	// ErrNotOwner: the process does not own the agent it acts for.
	ErrNotOwner = errors.New("agent belongs to another process")
	// ErrClaimed: another live process owns the agent name.
	ErrClaimed = errors.New("agent name is owned by another live process")
	// ErrAlreadyServing: the agent already has an open Serve stream.
	ErrAlreadyServing = errors.New("agent already has a Serve stream")
	// ErrNotServing: the agent has no Serve stream, or it ended.
	ErrNotServing = errors.New("agent is not serving")
	// ErrBusy: the agent has as many calls in flight as its limit.
	ErrBusy = errors.New("agent is at its in-flight limit")
	// ErrCallNotPending: an answer for a call nobody waits for.
	ErrCallNotPending = errors.New("call is not pending")
	// ErrVoteNotPending: a vote for a request nobody waits for.
	ErrVoteNotPending = errors.New("vote request is not pending")
	// ErrAlreadyAnswered: a second answer for one call or vote request.
	ErrAlreadyAnswered = errors.New("request was already answered")
	// ErrDuplicateRequest: a delivery or vote ask reuses a pending id.
	ErrDuplicateRequest = errors.New("request id is already pending")
	// ErrPayloadTooLarge: an answer over the node's payload limit.
	ErrPayloadTooLarge = errors.New("payload over the node's limit")
	// ErrWrongStream: an answer for another agent on an Attach stream.
	ErrWrongStream = errors.New("answer sent on another agent's stream")
	// ErrBadAttach: an Attach stream message out of protocol.
	ErrBadAttach = errors.New("message out of the Attach protocol")
	// ErrAttachTimeout: an Attach stream did not say which agent it serves.
	ErrAttachTimeout = errors.New("no serve message on the Attach stream")
	// ErrDeregistered: the agent was deregistered while serving.
	ErrDeregistered = errors.New("agent was deregistered")
	// ErrBadChunk: a streaming answer's frame out of protocol (sequence, empty).
	ErrBadChunk = errors.New("streaming answer out of protocol")
	// ErrChunkTooLarge: a chunk over the node's payload limit.
	ErrChunkTooLarge = errors.New("chunk over the node's payload limit")
	// ErrShuttingDown: the hub is closing; the agent should reconnect.
	ErrShuttingDown = errors.New("node is shutting down")
)

// codeOf is the hub's row of the agent API's error table.
var codeOf = map[error]codes.Code{
	ErrNotRegistered:         codes.NotFound,
	ErrNotOwner:              codes.PermissionDenied,
	ErrClaimed:               codes.AlreadyExists,
	ErrAlreadyServing:        codes.AlreadyExists,
	ErrNotServing:            codes.Unavailable,
	ErrBusy:                  codes.ResourceExhausted,
	ErrCallNotPending:        codes.NotFound,
	ErrVoteNotPending:        codes.NotFound,
	ErrAlreadyAnswered:       codes.AlreadyExists,
	ErrDuplicateRequest:      codes.AlreadyExists,
	ErrPayloadTooLarge:       codes.InvalidArgument,
	ErrWrongStream:           codes.PermissionDenied,
	ErrBadAttach:             codes.InvalidArgument,
	ErrAttachTimeout:         codes.DeadlineExceeded,
	ErrDeregistered:          codes.Aborted,
	ErrShuttingDown:          codes.Unavailable,
	ErrBadChunk:              codes.InvalidArgument,
	ErrChunkTooLarge:         codes.ResourceExhausted,
	context.DeadlineExceeded: codes.DeadlineExceeded,
	context.Canceled:         codes.Canceled,
}

// Error is a hub failure: Kind is one of the sentinels above (or a context
// error), Msg says what happened to which agent and what to do next.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Kind }

// GRPCStatus gives the error its agent API code, so status.Code works on it
// and on errors wrapping it.
func (e *Error) GRPCStatus() *status.Status { return status.New(Code(e.Kind), e.Msg) }

// Code is the gRPC code for a hub error kind (Unknown for others).
func Code(kind error) codes.Code {
	for k, c := range codeOf {
		if errors.Is(kind, k) {
			return c
		}
	}
	return codes.Unknown
}

func errorf(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// ctxError reports a context's end while doing something.
func ctxError(ctx context.Context, doing string) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errorf(context.DeadlineExceeded, "deadline passed while %s", doing)
	}
	return errorf(context.Canceled, "caller cancelled while %s", doing)
}
