package routing

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Route returns gRPC status errors whose message names the
// capability, agents and reason; these sentinels are wrapped alongside so
// callers can branch with errors.Is without parsing messages.
var (
	// ErrNoCapability: no agent offers the capability (with the constraints given).
	ErrNoCapability = errors.New("no agent offers the capability")
	// ErrNoneAvailable: agents offer the capability but none can take the call now.
	ErrNoneAvailable = errors.New("no agent is available")
	// ErrAllCircuitsOpen: every agent of the capability has an open breaker.
	ErrAllCircuitsOpen = errors.New("all circuit breakers are open")
	// ErrCycle: the call would re-enter an agent already on its chain.
	ErrCycle = errors.New("call cycle")
	// ErrHopLimit: the call exceeded the maximum number of hops.
	ErrHopLimit = errors.New("hop limit exceeded")
	// ErrBadMetadata: a peer's routing metadata is malformed.
	ErrBadMetadata = errors.New("malformed routing metadata")
	// ErrDeadline: too little time remains to make the call.
	ErrDeadline = errors.New("deadline too close")
)

// statusError is a gRPC status error that also unwraps to a sentinel, so
// both status.Code(err) and errors.Is(err, ErrX) work.
type statusError struct {
	st       *status.Status
	sentinel error
}

func (e *statusError) Error() string              { return e.st.Message() }
func (e *statusError) GRPCStatus() *status.Status { return e.st }
func (e *statusError) Unwrap() error              { return e.sentinel }

// retryableError marks an agent's failure as safe to retry elsewhere.
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// GRPCStatus keeps the wrapped error's status code visible to status.FromError.
func (e *retryableError) GRPCStatus() *status.Status {
	st, _ := status.FromError(e.err)
	return st
}

// MarkRetryable wraps an error an agent flagged as retryable (CallError.retryable)
// so the router may retry it on another agent. The gRPC code is preserved.
func MarkRetryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err: err}
}

// IsMarkedRetryable reports whether err was marked by MarkRetryable or carries
// a google.rpc.RetryInfo detail.
func IsMarkedRetryable(err error) bool {
	var re *retryableError
	if errors.As(err, &re) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			return true
		}
	}
	return false
}

func asFieldError(err error, fe **FieldError) bool { return errors.As(err, fe) }

// ErrBelowQualityFloor: every agent that could serve is circuit-open or below the hard quality floor.
var ErrBelowQualityFloor = errors.New("no agent meets the quality floor")
