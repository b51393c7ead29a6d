// Package quorum owns signed voting for critical decisions: proposals and
// their validation, domain-separated ed25519 vote signatures, the tally,
// quorum certificates that anyone can verify offline, evidence of
// equivocation, operator review, and the coordinator that runs a proposal
// on the proposer's node.
//
// The model (docs/quorum.md): a proposal's electorate is n voters on
// distinct hosts; the BFT rule tolerates f = floor((n-1)/3) Byzantine
// voters and decides on floor((n+f)/2)+1 matching votes (2f+1 when
// n = 3f+1). Each vote signs, under the context "meshnode/quorum/vote/v1",
// the cluster, proposal id, payload digest, a digest of the terms (kind,
// rule, electorate), round, choice, voter id and node and reason.
//
// Pure parts (no I/O, no clock, no goroutines): Threshold, SelectVoters,
// CheckElectorate, SignVote, VerifyVote, NewVote, Tally, VerifyDecision,
// VerifyCertificateSignatures, VerifyEquivocation, CrossCheck, ApplyReview,
// CheckTerms, CheckElectorateAgainst, DrawOrder.
//
// The Coordinator does I/O only through three interfaces the node
// implements: Directory (the registry), Requester (fan-out over the peer
// transport to agents' Serve streams) and Committer (Raft). Its clock is
// injected.
//
// It must not import node, transport or consensus.
package quorum
