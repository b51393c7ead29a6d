// Package operator owns operator identity and signed admin commands: who an
// operator is (a name, an ed25519 public key and roles, in a record signed
// by an admin), how a record chains back to the first admin whose key is in
// the cluster's trust bundle, and how an admin command is signed and
// verified. See docs/operators.md for the model.
//
// The package is pure: no clock (every check takes the time as a
// parameter, so the state machine can pass the time of the Raft log entry
// and every server reaches the same verdict), no network, no state. The
// only I/O is the key-file helpers (WriteKeyFile, ReadKeyFile and their
// public-key twins). What needs state is the caller's: the state machine
// stores the records, remembers nonces (NonceKey) until a command expires,
// and refuses to remove the last admin.
//
// Every check returns an error wrapping one of the exported sentinels, so
// callers branch with errors.Is and the API edge maps them to
// PermissionDenied; the message says which check failed and what to do.
//
// It may import only proto/meshnode/v1, internal/atomicfile and the
// standard library: never the node, consensus, pki (the online CA must not
// be able to vouch for an operator) or the API.
package operator
