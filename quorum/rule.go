package quorum

import (
	"crypto/sha256"
	"fmt"
	"unicode/utf8"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Limits on what a proposal or vote may carry. They bound the work a tally
// does for untrusted input.
const (
	// MaxIDBytes bounds proposal ids.
	MaxIDBytes = 128
	// MaxKindBytes bounds proposal kinds.
	MaxKindBytes = 128
	// MaxReasonBytes bounds a vote's reason.
	MaxReasonBytes = 1024
	// MaxVoters bounds an electorate.
	MaxVoters = 256
	// DefaultBFTVoters is n when a BFT capability selection gives no count:
	// the smallest electorate that tolerates one Byzantine voter (f = 1).
	DefaultBFTVoters = 4
	// DigestSize is the size of payload and terms digests (SHA-256).
	DigestSize = sha256.Size
)

// PayloadDigest returns the SHA-256 digest votes sign for payload.
func PayloadDigest(payload []byte) []byte {
	sum := sha256.Sum256(payload)
	return sum[:]
}

// RuleKind returns the effective kind of rule: unset means BFT.
func RuleKind(rule *meshnodev1.QuorumRule) meshnodev1.QuorumRuleKind {
	if k := rule.GetKind(); k != meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNSPECIFIED {
		return k
	}
	return meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT
}

// DistinctHosts reports whether rule needs every voter on its own node.
func DistinctHosts(rule *meshnodev1.QuorumRule) bool {
	return RuleKind(rule) == meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT || !rule.GetAllowSharedHosts()
}

// FaultTolerance returns f, the number of Byzantine voters a BFT electorate
// of n tolerates: the largest f with n >= 3f+1.
func FaultTolerance(n int) int {
	if n < 1 {
		return 0
	}
	return (n - 1) / 3
}

// Threshold returns how many matching votes decide a proposal with n voters
// under rule. For BFT it is floor((n+f)/2)+1, the smallest quorum such that
// any two quorums share at least f+1 voters (one honest); for n = 3f+1 that
// is 2f+1. Every rule's threshold is more than half of n, so two choices can
// never both reach it.
func Threshold(rule *meshnodev1.QuorumRule, n int) (int, error) {
	if n < 1 || n > MaxVoters {
		return 0, fmt.Errorf("%w: %d voters, want 1-%d", ErrInvalidProposal, n, MaxVoters)
	}
	k := rule.GetK()
	switch RuleKind(rule) {
	case meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT:
		if rule.GetAllowSharedHosts() {
			return 0, fmt.Errorf("%w: rule.allow_shared_hosts cannot be used with BFT: one compromised host would control several votes", ErrInvalidProposal)
		}
		if k != 0 {
			return 0, fmt.Errorf("%w: rule.k is only for K_OF_N", ErrInvalidProposal)
		}
		if n < DefaultBFTVoters {
			return 0, fmt.Errorf("%w: BFT needs at least 4 voters on distinct hosts (n = 3f+1, f >= 1), got %d", ErrInvalidProposal, n)
		}
		return (n+FaultTolerance(n))/2 + 1, nil
	case meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N:
		if k == 0 || int(k) > n || 2*int(k) <= n {
			return 0, fmt.Errorf("%w: rule.k = %d with %d voters: want n/2 < k <= n so two choices cannot both reach it", ErrInvalidProposal, k, n)
		}
		return int(k), nil
	case meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_UNANIMOUS:
		if k != 0 {
			return 0, fmt.Errorf("%w: rule.k is only for K_OF_N", ErrInvalidProposal)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: unknown rule.kind %d", ErrInvalidProposal, rule.GetKind())
}

// SelectionSize returns n, the number of voters sel asks for under rule.
func SelectionSize(sel *meshnodev1.VoterSelection, rule *meshnodev1.QuorumRule) (int, error) {
	switch {
	case sel == nil:
		return 0, fmt.Errorf("%w: selection is required: set selection.capability and count, or selection.agent_ids", ErrInvalidProposal)
	case sel.GetCapability() != "" && len(sel.GetAgentIds()) > 0:
		return 0, fmt.Errorf("%w: set either selection.capability or selection.agent_ids, not both", ErrInvalidProposal)
	case len(sel.GetAgentIds()) > 0:
		if sel.GetCount() != 0 && int(sel.GetCount()) != len(sel.GetAgentIds()) {
			return 0, fmt.Errorf("%w: selection.count = %d but %d agent_ids", ErrInvalidProposal, sel.GetCount(), len(sel.GetAgentIds()))
		}
		seen := make(map[string]bool, len(sel.GetAgentIds()))
		for _, id := range sel.GetAgentIds() {
			if id == "" || seen[id] {
				return 0, fmt.Errorf("%w: selection.agent_ids: empty or duplicate id %q", ErrInvalidProposal, id)
			}
			seen[id] = true
		}
		return len(sel.GetAgentIds()), nil
	case sel.GetCapability() != "":
		if sel.GetCount() == 0 {
			if RuleKind(rule) == meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT {
				return DefaultBFTVoters, nil
			}
			return 0, fmt.Errorf("%w: selection.count is required for %s", ErrInvalidProposal, RuleKind(rule))
		}
		return int(sel.GetCount()), nil
	}
	return 0, fmt.Errorf("%w: selection has neither capability nor agent_ids", ErrInvalidProposal)
}

// ValidateProposal checks a proposal as the node completes it (payload
// digest filled, deadline set), before voters are chosen. It does not look
// at the electorate.
func ValidateProposal(p *meshnodev1.Proposal) error {
	if p == nil {
		return fmt.Errorf("%w: proposal is required", ErrInvalidProposal)
	}
	if err := checkName("id", p.GetId(), MaxIDBytes); err != nil {
		return err
	}
	if err := checkName("kind", p.GetKind(), MaxKindBytes); err != nil {
		return fmt.Errorf("proposal %q: %w", p.GetId(), err)
	}
	if len(p.GetPayloadDigest()) != DigestSize || string(p.GetPayloadDigest()) != string(PayloadDigest(p.GetPayload())) {
		return fmt.Errorf("%w: proposal %q: payload_digest must be the SHA-256 of payload (or left empty for the node to fill in)", ErrInvalidProposal, p.GetId())
	}
	n, err := SelectionSize(p.GetSelection(), p.GetRule())
	if err != nil {
		return fmt.Errorf("proposal %q: %w", p.GetId(), err)
	}
	if _, err := Threshold(p.GetRule(), n); err != nil {
		return fmt.Errorf("proposal %q: %w", p.GetId(), err)
	}
	if !p.GetDeadline().IsValid() {
		return fmt.Errorf("%w: proposal %q: deadline is required", ErrInvalidProposal, p.GetId())
	}
	if p.GetCreatedAt() != nil && !p.GetDeadline().AsTime().After(p.GetCreatedAt().AsTime()) {
		return fmt.Errorf("%w: proposal %q: deadline %s is not after created_at %s", ErrInvalidProposal, p.GetId(),
			p.GetDeadline().AsTime(), p.GetCreatedAt().AsTime())
	}
	if _, ok := meshnodev1.NoQuorumAction_name[int32(p.GetOnNoQuorum())]; !ok {
		return fmt.Errorf("%w: proposal %q: unknown on_no_quorum %d", ErrInvalidProposal, p.GetId(), p.GetOnNoQuorum())
	}
	return nil
}

func checkName(field, s string, max int) error {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s must be 1-%d bytes of UTF-8, got %d bytes", ErrInvalidProposal, field, max, len(s))
	}
	return nil
}
