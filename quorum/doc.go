// Package quorum owns signed voting for critical decisions: proposals,
// domain-separated vote signatures, the tally (pure code, no I/O), quorum
// certificates that anyone can verify, and evidence of equivocation.
//
// It must not import node or transport.
package quorum
