// Package pki owns the cluster's trust: the CA, one-time join tokens, node
// certificates and their renewal, SPIFFE identities, revocation checks and
// the tls.Config builders the transport uses. See docs/pki.md.
//
// Files:
//   - spiffe.go: identities (ID, ParseID, IDFromCert) and name rules.
//   - tlsconfig.go: VerifyPeer, the one handshake check, and TLSSource,
//     whose configs read the current certificate, roots and revocations at
//     every handshake.
//   - material.go, ca.go: CA material (root + intermediate, ECDSA P-256,
//     templates from go.step.sm/crypto/x509util) and the CA that signs
//     from it.
//   - token.go: join tokens (ES256 JWTs signed by the intermediate).
//   - join.go: CA.Join and CA.Renew (server side), JoinClientTLS and
//     NewJoinRequest (joining side), CSR checks.
//   - joinclient.go: Join, the joining side's seed loop with backoff, and
//     IsFinalJoinError, which refusals end it.
//   - issued.go: checking a CA's answer before trusting it.
//   - credentials.go: a node's key, chain and roots on disk (atomic writes
//     through internal/atomicfile, mode checks) and Keeper, which rotates
//     them in memory.
//   - gossipkey.go: the node's gossip signing key file.
//   - renewer.go: renewal at 2/3 of the lifetime with jitter and backoff.
//   - bootstrap.go: the single-node default and `meshnode pki init`.
//   - store.go: the Store interface node backs with consensus, MemStore.
//   - service.go: the PKIService served on the node's socket.
//
// Its durable records (CA material, used tokens, revocations) go through
// Store, which node backs with consensus. It must not import node,
// transport or consensus.
package pki
