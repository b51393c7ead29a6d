package quorum

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the wrapped message
// says which proposal, agent or field was involved.
var (
	// ErrInvalidProposal is returned for a proposal that is malformed or
	// asks for something impossible (bad rule, bad selection, bad digest).
	ErrInvalidProposal = errors.New("invalid proposal")
	// ErrTooFewHosts is returned before any fan-out when the eligible voters
	// cannot satisfy the rule on distinct hosts.
	ErrTooFewHosts = errors.New("too few distinct hosts for the quorum rule")
	// ErrTooFewVoters is returned before any fan-out when fewer eligible
	// voters exist than the rule needs.
	ErrTooFewVoters = errors.New("too few eligible voters for the quorum rule")
	// ErrInvalidElectorate is returned for a voter set with duplicate ids,
	// duplicate keys, bad keys, or one that disagrees with the proposal.
	ErrInvalidElectorate = errors.New("invalid electorate")
	// ErrProposalConflict is returned when a proposal id that was already
	// used is proposed again with a different kind or payload.
	ErrProposalConflict = errors.New("proposal id already used for a different proposal")
	// ErrNotReviewable is returned by ApplyReview for a decision that is not
	// waiting for review.
	ErrNotReviewable = errors.New("decision is not waiting for review")
	// ErrNotFound is returned by a Committer (and Coordinator.Wait) for a
	// proposal id nothing is known about.
	ErrNotFound = errors.New("no decision for this proposal id")
	// ErrClosed is returned by a Coordinator after Close.
	ErrClosed = errors.New("quorum coordinator is closed")
)

// Reasons a vote is discarded by the tally. Each one is wrapped with the
// voter and proposal in Result.Discarded.
var (
	ErrMalformedVote   = errors.New("malformed vote")
	ErrNotEligible     = errors.New("voter is not in the electorate")
	ErrWrongNode       = errors.New("voter node does not match the electorate")
	ErrOtherCluster    = errors.New("vote is for another cluster")
	ErrOtherProposal   = errors.New("vote is for another proposal (replay)")
	ErrOtherRound      = errors.New("vote is for another round")
	ErrPayloadMismatch = errors.New("vote signs another payload digest")
	ErrTermsMismatch   = errors.New("vote signs other terms (kind, rule or electorate)")
	ErrBadSignature    = errors.New("vote signature does not verify")
	ErrDuplicateVote   = errors.New("duplicate vote")
	ErrEquivocation    = errors.New("voter equivocated")
	ErrLateVote        = errors.New("vote arrived after the deadline")
)

// Certificate and evidence verification failures.
var (
	// ErrInvalidCertificate is returned by VerifyCertificateSignatures (and VerifyDecision) for any
	// certificate that does not prove its decision.
	ErrInvalidCertificate = errors.New("invalid quorum certificate")
	// ErrInvalidEvidence is returned by VerifyEquivocation for evidence that
	// does not convict its agent.
	ErrInvalidEvidence = errors.New("invalid equivocation evidence")
)
