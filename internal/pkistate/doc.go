// Package pkistate backs the CA's store (pki.Store) with the consensus
// store: CA material as a server-only CA record, one-time token uses that
// claim a node name, revocations and server admissions, answered from the
// local replica where the CA must not block. It translates the state
// machine's refusals into pki's sentinels (a used token must reach the
// joiner as PermissionDenied, never Internal).
//
// It may import consensus, pki and the API types, never the node.
package pkistate
