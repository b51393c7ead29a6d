// Package pki owns the cluster's trust: the CA (smallstep), one-time join
// tokens, node and agent certificates and their renewal, SPIFFE identities,
// revocation checks and the tls.Config builders the transport uses.
//
// Its durable records (CA material, used tokens, revocations) go through a
// Store interface that node backs with consensus. It must not import node,
// transport or consensus.
package pki
