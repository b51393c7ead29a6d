package apierror

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"github.com/agentmesh/meshnode/routing"
)

// Rule maps every error that errors.Is Err to Code.
type Rule struct {
	Err  error
	Code codes.Code
}

// Table is the mapping, most specific first: the first rule whose Err the
// error wraps decides. ErrNoLeader comes before context.DeadlineExceeded
// because a write that timed out without a leader wraps both, and the
// leader is what the caller can act on.
var Table = []Rule{
	// consensus: what a retry (elsewhere, or after an election) can fix.
	{consensus.ErrNoLeader, codes.Unavailable},
	{consensus.ErrNotLeader, codes.Unavailable},
	{consensus.ErrNotReady, codes.Unavailable},
	{consensus.ErrClosed, codes.Unavailable},
	// consensus: what it cannot.
	{consensus.ErrNotFound, codes.NotFound},
	{consensus.ErrInvalidCommand, codes.InvalidArgument},
	{consensus.ErrPermissionDenied, codes.PermissionDenied},
	{consensus.ErrNameTaken, codes.PermissionDenied},
	{consensus.ErrTokenExpired, codes.PermissionDenied},
	{consensus.ErrQuotaExceeded, codes.ResourceExhausted},
	{consensus.ErrFailedPrecondition, codes.FailedPrecondition},
	{consensus.ErrTokenUsed, codes.FailedPrecondition},
	{consensus.ErrUnknownVersion, codes.FailedPrecondition},
	{consensus.ErrServerOnly, codes.FailedPrecondition},
	{consensus.ErrStorage, codes.Internal},

	// pki: join tokens and certificate requests.
	{pki.ErrTokenUsed, codes.FailedPrecondition},
	{pki.ErrTokenMalformed, codes.InvalidArgument},
	{pki.ErrTokenExpired, codes.Unauthenticated},
	{pki.ErrTokenSignature, codes.Unauthenticated},
	{pki.ErrTokenWrongCluster, codes.Unauthenticated},
	{pki.ErrTokenWrongRole, codes.PermissionDenied},
	{pki.ErrTokenName, codes.PermissionDenied},
	{pki.ErrBadCSR, codes.InvalidArgument},
	{pki.ErrBadID, codes.InvalidArgument},
	{pki.ErrRevoked, codes.PermissionDenied},
	{pki.ErrNotFound, codes.FailedPrecondition}, // no CA here: a client node

	// quorum.
	{quorum.ErrInvalidProposal, codes.InvalidArgument},
	{quorum.ErrInvalidElectorate, codes.InvalidArgument},
	{quorum.ErrInvalidCertificate, codes.InvalidArgument},
	{quorum.ErrInvalidEvidence, codes.InvalidArgument},
	{quorum.ErrBelowPolicy, codes.FailedPrecondition},
	{quorum.ErrTooFewHosts, codes.FailedPrecondition},
	{quorum.ErrTooFewVoters, codes.FailedPrecondition},
	{quorum.ErrNotReviewable, codes.FailedPrecondition},
	{quorum.ErrProposalConflict, codes.AlreadyExists},
	{quorum.ErrNotFound, codes.NotFound},
	{quorum.ErrClosed, codes.Unavailable},

	// routing returns statuses already; these cover a bare sentinel.
	{routing.ErrNoCapability, codes.NotFound},
	{routing.ErrNoneAvailable, codes.Unavailable},
	{routing.ErrAllCircuitsOpen, codes.Unavailable},
	{routing.ErrBelowQualityFloor, codes.Unavailable},
	{routing.ErrCycle, codes.FailedPrecondition},
	{routing.ErrHopLimit, codes.FailedPrecondition},
	{routing.ErrDeadline, codes.DeadlineExceeded},

	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// Code is the gRPC code the API answers err with.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	return status.Code(Map(err))
}

// Map turns err into the gRPC status error the API answers with. It is the
// socket's error boundary (socketapi.Config.MapError). Nil stays nil.
func Map(err error) error {
	if err == nil {
		return nil
	}
	return mapError("", err)
}

// Wrap is Map for an error met while doing something: the message starts
// with what was being done ("register agent n1/a: ..."). A status error
// passes through unprefixed: it was built for the caller already.
func Wrap(doing string, err error) error {
	if err == nil {
		return nil
	}
	return mapError(doing, err)
}

func mapError(doing string, err error) error {
	st, isStatus := status.FromError(err)
	if isStatus && st.Code() != codes.Unknown {
		return oneLine(st)
	}
	msg := err.Error()
	if doing != "" {
		msg = doing + ": " + msg
	}
	for _, r := range Table {
		if errors.Is(err, r.Err) {
			return oneLine(status.New(r.Code, msg))
		}
	}
	if isStatus {
		// An Unknown status (an agent's own failure, passed on as it said
		// it) is the agent's word; it is not ours to reclassify.
		return oneLine(st)
	}
	return oneLine(status.New(codes.Internal, msg))
}

// oneLine keeps a status message on one line: errors.Join separates its
// errors with newlines, which break log lines and JSON-reading clients.
func oneLine(st *status.Status) error {
	if !strings.Contains(st.Message(), "\n") {
		return st.Err()
	}
	p := st.Proto()
	p.Message = strings.Join(strings.FieldsFunc(p.GetMessage(), func(r rune) bool { return r == '\n' }), "; ")
	return status.FromProto(p).Err()
}

// resultCodes maps an FSM result to the code its refusal answers with; an
// unlisted refusal is FailedPrecondition (the command was well formed, the
// state did not allow it).
var resultCodes = map[meshnodev1.CommandStatus]codes.Code{
	meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND:  codes.NotFound,
	meshnodev1.CommandStatus_COMMAND_STATUS_INVALID:    codes.InvalidArgument,
	meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED: codes.FailedPrecondition,
}

// Result turns a command's FSM result into an error: nil for OK (or no
// result), else the status of the refusal, its message prefixed with doing.
func Result(doing string, res *meshnodev1.CommandResult) error {
	switch res.GetStatus() {
	case meshnodev1.CommandStatus_COMMAND_STATUS_OK, meshnodev1.CommandStatus_COMMAND_STATUS_UNSPECIFIED:
		return nil
	}
	code, ok := resultCodes[res.GetStatus()]
	if !ok {
		code = codes.FailedPrecondition
	}
	return oneLine(status.New(code, doing+": "+res.GetMessage()))
}
