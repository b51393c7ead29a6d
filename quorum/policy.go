package quorum

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// ErrBelowPolicy is returned for a proposal or decision weaker than the
// quorum policy of its kind: too few voters, a lower threshold, voters
// sharing hosts, voters the proposer named where the policy chooses them,
// or voters outside the policy's pinned nodes.
var ErrBelowPolicy = errors.New("below the quorum policy of its kind")

// MaxEligibleNodes bounds a policy's pinned node list, MaxEligibleKeys its
// pinned keys.
const (
	MaxEligibleNodes = 1024
	MaxEligibleKeys  = 1024
)

// DefaultPolicy is what a kind gets when neither it nor the cluster default
// has a policy: BFT, at least DefaultBFTVoters voters, distinct hosts.
func DefaultPolicy() *meshnodev1.QuorumPolicy {
	return &meshnodev1.QuorumPolicy{
		MinRule:   &meshnodev1.QuorumRule{Kind: meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_BFT},
		MinVoters: DefaultBFTVoters,
	}
}

// Effective returns the policy for kind from the stored ones (by kind, ""
// for the cluster default): the kind's own, else the cluster default, else
// DefaultPolicy. A default keeps kind "", so errors say which applied.
func Effective(stored map[string]*meshnodev1.QuorumPolicy, kind string) *meshnodev1.QuorumPolicy {
	p, ok := stored[kind]
	if !ok {
		p, ok = stored[""]
	}
	if !ok {
		return DefaultPolicy()
	}
	return proto.CloneOf(p)
}

// ValidatePolicy checks a policy an operator sets: a valid kind (or ""), a
// rule that could decide with its minimum number of voters, and a sane
// pinned node list.
func ValidatePolicy(p *meshnodev1.QuorumPolicy) error {
	if p == nil {
		return fmt.Errorf("%w: policy is required", ErrInvalidProposal)
	}
	if p.GetKind() != "" {
		if err := checkName("policy.kind", p.GetKind(), MaxKindBytes); err != nil {
			return err
		}
	}
	if p.GetMinRule().GetAllowSharedHosts() {
		return fmt.Errorf("%w: policy.min_rule.allow_shared_hosts: say policy.allow_shared_hosts instead", ErrInvalidProposal)
	}
	if _, err := Threshold(p.GetMinRule(), minVoters(p)); err != nil {
		return fmt.Errorf("policy for kind %q: min_rule with min_voters %d: %w", p.GetKind(), minVoters(p), err)
	}
	if n := len(p.GetEligibleNodes()); n > MaxEligibleNodes {
		return fmt.Errorf("%w: policy.eligible_nodes has %d nodes, at most %d", ErrInvalidProposal, n, MaxEligibleNodes)
	}
	if n := len(p.GetEligibleNodes()); n > 0 && n < minVoters(p) && !p.GetAllowSharedHosts() {
		return fmt.Errorf("%w: policy.eligible_nodes names %d nodes, fewer than min_voters %d on distinct hosts", ErrInvalidProposal, n, minVoters(p))
	}
	if n := len(p.GetEligibleKeys()); n > MaxEligibleKeys {
		return fmt.Errorf("%w: policy.eligible_keys has %d keys, at most %d", ErrInvalidProposal, n, MaxEligibleKeys)
	} else if n > 0 && n < minVoters(p) {
		return fmt.Errorf("%w: policy.eligible_keys pins %d keys, fewer than min_voters %d", ErrInvalidProposal, n, minVoters(p))
	}
	for i, k := range p.GetEligibleKeys() {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: policy.eligible_keys[%d] is %d bytes, want an ed25519 public key (%d)", ErrInvalidProposal, i, len(k), ed25519.PublicKeySize)
		}
	}
	if p.GetVoterCapability() != "" {
		if err := checkName("policy.voter_capability", p.GetVoterCapability(), MaxKindBytes); err != nil {
			return err
		}
	}
	return nil
}

func minVoters(p *meshnodev1.QuorumPolicy) int {
	if p.GetMinVoters() == 0 {
		return DefaultBFTVoters
	}
	return int(p.GetMinVoters())
}

// requiredThreshold is the fewest matching votes pol accepts from n voters.
func requiredThreshold(pol *meshnodev1.QuorumPolicy, n int) (int, error) {
	rule := pol.GetMinRule()
	if RuleKind(rule) == meshnodev1.QuorumRuleKind_QUORUM_RULE_KIND_K_OF_N {
		// A K_OF_N minimum is "at least k, and a majority".
		return max(int(rule.GetK()), n/2+1), nil
	}
	return Threshold(rule, n)
}

// CheckTerms reports whether a proposal's terms, before voters are chosen,
// meet pol: it may not name its voters where pol chooses them, its
// selection must ask for at least pol's voters, its rule must need at least
// pol's threshold for that many, and it may not share hosts unless pol
// allows it. The error names the policy and what the proposal lacks.
func CheckTerms(pol *meshnodev1.QuorumPolicy, p *meshnodev1.Proposal) error {
	n, err := SelectionSize(p.GetSelection(), p.GetRule())
	if err != nil {
		return err
	}
	if c := pol.GetVoterCapability(); c != "" && p.GetSelection().GetCapability() != c {
		return belowPolicy(pol, p, "voters of this kind are chosen by the node among agents offering %q: select by --capability %s, not by name", c, c)
	}
	return checkShape(pol, p, n)
}

// CheckElectorateAgainst reports whether p's chosen electorate meets pol:
// CheckTerms' size, threshold and hosts for the actual voters, and every
// voter on one of pol's pinned nodes.
func CheckElectorateAgainst(pol *meshnodev1.QuorumPolicy, p *meshnodev1.Proposal) error {
	voters := p.GetElectorate()
	if err := checkShape(pol, p, len(voters)); err != nil {
		return err
	}
	pinned := pol.GetEligibleNodes()
	hosts := map[string]string{}
	for _, v := range voters {
		if len(pinned) > 0 && !slices.Contains(pinned, v.GetNode()) {
			return belowPolicy(pol, p, "voter %s is on node %s, which is not one of the policy's eligible nodes (%s)", v.GetAgentId(), v.GetNode(), strings.Join(pinned, ", "))
		}
		if other, dup := hosts[v.GetNode()]; dup && !pol.GetAllowSharedHosts() {
			return belowPolicy(pol, p, "voters %s and %s share node %s; the policy needs every voter on a distinct host", other, v.GetAgentId(), v.GetNode())
		}
		hosts[v.GetNode()] = v.GetAgentId()
	}
	return nil
}

// checkShape is the size, threshold and host-sharing part of a policy for
// a proposal of n voters.
func checkShape(pol *meshnodev1.QuorumPolicy, p *meshnodev1.Proposal, n int) error {
	if want := minVoters(pol); n < want {
		return belowPolicy(pol, p, "it has %d voters, the policy needs at least %d", n, want)
	}
	got, err := Threshold(p.GetRule(), n)
	if err != nil {
		return err
	}
	want, err := requiredThreshold(pol, n)
	if err != nil {
		return belowPolicy(pol, p, "the policy's rule cannot decide with %d voters: %v", n, err)
	}
	if got < want {
		return belowPolicy(pol, p, "its %s rule decides with %d of %d votes, the policy needs at least %d (%s)",
			RuleKind(p.GetRule()), got, n, want, RuleKind(pol.GetMinRule()))
	}
	if !pol.GetAllowSharedHosts() && !DistinctHosts(p.GetRule()) {
		return belowPolicy(pol, p, "it allows voters to share hosts, the policy needs every voter on a distinct host")
	}
	return nil
}

func belowPolicy(pol *meshnodev1.QuorumPolicy, p *meshnodev1.Proposal, format string, args ...any) error {
	name := fmt.Sprintf("the quorum policy of kind %q", pol.GetKind())
	if pol.GetKind() == "" {
		name = "the cluster's default quorum policy"
	}
	return fmt.Errorf("%w: proposal %q against %s: %s", ErrBelowPolicy, p.GetId(), name, fmt.Sprintf(format, args...))
}

// KeyPinned reports whether pol lets key vote: always when pol pins no
// keys.
func KeyPinned(pol *meshnodev1.QuorumPolicy, key []byte) bool {
	pinned := pol.GetEligibleKeys()
	return len(pinned) == 0 || slices.ContainsFunc(pinned, func(k []byte) bool { return bytes.Equal(k, key) })
}

// CheckVoterKeys reports whether every member of p's electorate signs with
// a key pol pins (keys maps members to the keys they vote with). A vote by
// a key the policy does not name does not count, whoever certified it.
func CheckVoterKeys(pol *meshnodev1.QuorumPolicy, p *meshnodev1.Proposal, keys KeyLookup) error {
	if len(pol.GetEligibleKeys()) == 0 {
		return nil
	}
	for _, v := range p.GetElectorate() {
		voter, err := keys.Voter(v.GetAgentId())
		if err != nil {
			return belowPolicy(pol, p, "voter %s has no known key: %v", v.GetAgentId(), err)
		}
		if !KeyPinned(pol, voter.PublicKey) {
			return belowPolicy(pol, p, "voter %s signs with key %x…, which is not one of the policy's pinned keys", v.GetAgentId(), voter.PublicKey[:min(len(voter.PublicKey), 8)])
		}
	}
	return nil
}
