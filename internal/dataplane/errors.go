package dataplane

import (
	"fmt"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// agentError is a failure the serving agent reported. It keeps the agent's
// retryable mark, which routing uses to decide whether to try elsewhere.
type agentError struct {
	code      codes.Code
	msg       string
	retryable bool
}

func (e *agentError) Error() string { return fmt.Sprintf("agent error (%s): %s", e.code, e.msg) }

// GRPCStatus lets the error cross the agent API with the agent's code.
func (e *agentError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

// proto is the error as the agent reported it, for the caller's node.
func (e *agentError) proto() *meshnodev1.CallError {
	return &meshnodev1.CallError{Code: uint32(e.code), Message: e.msg, Retryable: e.retryable}
}

func agentErrorFrom(ce *meshnodev1.CallError) *agentError {
	code := codes.Code(ce.GetCode())
	if code == codes.OK || code > codes.Unauthenticated {
		code = codes.Unknown
	}
	return &agentError{code: code, msg: ce.GetMessage(), retryable: ce.GetRetryable()}
}
