package consensus

import (
	"errors"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotLeader means the operation needs the Raft leader and this server
	// is not it; Store.Apply forwards instead of returning it.
	ErrNotLeader = errors.New("consensus: this server is not the Raft leader")
	// ErrNoLeader means no leader could be reached before the deadline.
	ErrNoLeader = errors.New("consensus: the cluster has no leader (no quorum of servers can reach each other): " +
		"check that a majority of the voting servers are running and reachable (`meshnode members`), " +
		"or wait for the election to finish and retry")
	// ErrTokenUsed means UseToken found the one-time token already used.
	ErrTokenUsed = errors.New("consensus: token already used")
	// ErrNotFound means the command or read names a record that does not exist.
	ErrNotFound = errors.New("consensus: not found")
	// ErrInvalidCommand means a command is malformed; it was not applied.
	ErrInvalidCommand = errors.New("consensus: invalid command")
	// ErrUnknownVersion means a command, log entry or snapshot has a format
	// version this node does not understand: upgrade the node.
	ErrUnknownVersion = errors.New("consensus: unknown format version")
	// ErrServerOnly means the data lives on servers only (CA records, tokens)
	// and this node is a client.
	ErrServerOnly = errors.New("consensus: only servers hold this data")
	// ErrPermissionDenied means the command's origin may not make the
	// change (a client node writing another node's records or an admin
	// record, a name already claimed). Nothing changed.
	ErrPermissionDenied = errors.New("consensus: permission denied")
	// ErrNameTaken means a join claimed a node name that is registered, an
	// admitted server or revoked.
	ErrNameTaken = errors.New("consensus: node name already claimed")
	// ErrTokenExpired means a join token reached the log after its expiry.
	ErrTokenExpired = errors.New("consensus: join token expired by the cluster's clock")
	// ErrQuotaExceeded means a client node is over a quota on replicated
	// state; the message names the quota and what to do.
	ErrQuotaExceeded = errors.New("consensus: quota exceeded")
	// ErrFailedPrecondition means the command is valid but the state does
	// not allow it now; the message says what must change first.
	ErrFailedPrecondition = errors.New("consensus: failed precondition")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("consensus: store closed")
	// ErrNotReady means the client replica has not loaded its first snapshot.
	ErrNotReady = errors.New("consensus: the local replica has not synchronised with a server yet; retry shortly")
	// ErrStorage means the Raft log or snapshot store failed (disk full, fsync
	// error). The node stops acknowledging writes: fix the disk and restart.
	ErrStorage = errors.New("consensus: Raft storage failed; free disk space or fix the data directory and restart the node")
)

// RefusedError is a command the state machine applied with an outcome other
// than OK: it named a record that does not exist, used a token already used,
// or was invalid. Nothing changed. It is errors.Is the matching sentinel
// (ErrNotFound, ErrTokenUsed or ErrInvalidCommand), so callers branch on the
// sentinel and read Status and Message when they need the detail.
type RefusedError struct {
	// Status is the state machine's outcome for the command.
	Status meshnodev1.CommandStatus
	// Message is the state machine's explanation, naming the record.
	Message string
	// Index is the log index at which the command was applied (and refused).
	Index uint64
}

func (e *RefusedError) Error() string { return e.Unwrap().Error() + ": " + e.Message }

// Unwrap returns the sentinel for Status.
func (e *RefusedError) Unwrap() error {
	switch e.Status {
	case meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND:
		return ErrNotFound
	case meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED:
		return ErrTokenUsed
	case meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED:
		return ErrPermissionDenied
	case meshnodev1.CommandStatus_COMMAND_STATUS_NAME_TAKEN:
		return ErrNameTaken
	case meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_EXPIRED:
		return ErrTokenExpired
	case meshnodev1.CommandStatus_COMMAND_STATUS_QUOTA_EXCEEDED:
		return ErrQuotaExceeded
	case meshnodev1.CommandStatus_COMMAND_STATUS_FAILED_PRECONDITION:
		return ErrFailedPrecondition
	}
	return ErrInvalidCommand
}

// resultError is the one conversion of a command's result into an error:
// nil for OK, a *RefusedError otherwise (an unspecified status is a
// malformed result, hence invalid).
func resultError(r *meshnodev1.CommandResult) error {
	if r.GetStatus() == meshnodev1.CommandStatus_COMMAND_STATUS_OK {
		return nil
	}
	return &RefusedError{Status: r.GetStatus(), Message: r.GetMessage(), Index: r.GetIndex()}
}
