package quorum

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Voter is an agent that may vote: its id, the node it is attached to, and
// its registered ed25519 vote key.
type Voter struct {
	AgentID   string
	Node      string
	PublicKey ed25519.PublicKey
}

// Electorate returns the proto form of voters, sorted by agent id, as it is
// placed in Proposal.electorate and covered by the terms digest.
func Electorate(voters []Voter) []*meshnodev1.QuorumVoter {
	out := make([]*meshnodev1.QuorumVoter, len(voters))
	for i, v := range voters {
		out[i] = &meshnodev1.QuorumVoter{AgentId: v.AgentID, Node: v.Node}
	}
	slices.SortFunc(out, func(a, b *meshnodev1.QuorumVoter) int { return strings.Compare(a.GetAgentId(), b.GetAgentId()) })
	return out
}

// CheckElectorate reports whether voters can decide under rule: a valid
// size and threshold, unique agent ids, valid and unique keys (two agents
// sharing a key would let one sign for the other), and, unless the rule
// allows shared hosts, every voter on a distinct node.
func CheckElectorate(rule *meshnodev1.QuorumRule, voters []Voter) error {
	if _, err := Threshold(rule, len(voters)); err != nil {
		return err
	}
	ids := make(map[string]bool, len(voters))
	nodes := make(map[string]string, len(voters))
	keys := make(map[string]string, len(voters))
	for _, v := range voters {
		switch {
		case v.AgentID == "" || v.Node == "":
			return fmt.Errorf("%w: voter %q on node %q: agent id and node are required", ErrInvalidElectorate, v.AgentID, v.Node)
		case ids[v.AgentID]:
			return fmt.Errorf("%w: agent %q appears twice", ErrInvalidElectorate, v.AgentID)
		case len(v.PublicKey) != ed25519.PublicKeySize:
			return fmt.Errorf("%w: agent %q has no valid vote key (%d bytes); it must register one to vote", ErrInvalidElectorate, v.AgentID, len(v.PublicKey))
		case keys[string(v.PublicKey)] != "":
			return fmt.Errorf("%w: agents %q and %q registered the same vote key", ErrInvalidElectorate, keys[string(v.PublicKey)], v.AgentID)
		}
		ids[v.AgentID] = true
		keys[string(v.PublicKey)] = v.AgentID
		if other, ok := nodes[v.Node]; ok && DistinctHosts(rule) {
			return fmt.Errorf("%w: agents %q and %q are both on node %q; the %s rule needs every voter on a distinct host",
				ErrTooFewHosts, other, v.AgentID, v.Node, RuleKind(rule))
		}
		nodes[v.Node] = v.AgentID
	}
	return nil
}

// SelectVoters picks the electorate for sel and rule from candidates, which
// the Directory returns ready, unflagged and in order of preference. For a
// capability selection it takes the first candidate of each node (or the
// first candidates at all, if the rule allows shared hosts) until it has
// n; for explicit ids it takes exactly those agents. The result is sorted by
// agent id. It fails with ErrTooFewHosts or ErrTooFewVoters before anyone is
// asked to vote.
func SelectVoters(sel *meshnodev1.VoterSelection, rule *meshnodev1.QuorumRule, candidates []Voter) ([]Voter, error) {
	n, err := SelectionSize(sel, rule)
	if err != nil {
		return nil, err
	}
	if _, err := Threshold(rule, n); err != nil {
		return nil, err
	}
	var chosen []Voter
	if ids := sel.GetAgentIds(); len(ids) > 0 {
		chosen, err = pickExplicit(ids, candidates)
	} else {
		chosen, err = pickByCapability(sel.GetCapability(), n, DistinctHosts(rule), rule, candidates)
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(chosen, func(a, b Voter) int { return strings.Compare(a.AgentID, b.AgentID) })
	if err := CheckElectorate(rule, chosen); err != nil {
		return nil, err
	}
	return chosen, nil
}

func pickExplicit(ids []string, candidates []Voter) ([]Voter, error) {
	byID := make(map[string]Voter, len(candidates))
	for _, c := range candidates {
		byID[c.AgentID] = c
	}
	chosen := make([]Voter, 0, len(ids))
	var missing []string
	for _, id := range ids {
		c, ok := byID[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		chosen = append(chosen, c)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: agents %s are unknown, not ready, flagged or have no vote key", ErrTooFewVoters, strings.Join(missing, ", "))
	}
	return chosen, nil
}

func pickByCapability(capability string, n int, distinct bool, rule *meshnodev1.QuorumRule, candidates []Voter) ([]Voter, error) {
	chosen := make([]Voter, 0, n)
	usedNodes := make(map[string]bool)
	seen := make(map[string]bool)
	// A key registered by two agents is skipped for both: one of them copied
	// the other's key, and nothing says which.
	keyUses := make(map[string]int, len(candidates))
	for _, c := range candidates {
		keyUses[string(c.PublicKey)]++
	}
	for _, c := range candidates {
		if len(chosen) == n {
			break
		}
		if c.AgentID == "" || c.Node == "" || seen[c.AgentID] || len(c.PublicKey) != ed25519.PublicKeySize || keyUses[string(c.PublicKey)] > 1 {
			continue
		}
		if distinct && usedNodes[c.Node] {
			continue
		}
		seen[c.AgentID] = true
		usedNodes[c.Node] = true
		chosen = append(chosen, c)
	}
	if len(chosen) == n {
		return chosen, nil
	}
	if distinct {
		return nil, fmt.Errorf("%w: the %s rule needs %d voters on distinct hosts, but only %d hosts have a ready, unflagged agent offering %q with a vote key; add voters on more hosts or lower selection.count",
			ErrTooFewHosts, RuleKind(rule), n, len(chosen), capability)
	}
	return nil, fmt.Errorf("%w: the %s rule needs %d voters, but only %d ready, unflagged agents offer %q with a vote key",
		ErrTooFewVoters, RuleKind(rule), n, len(chosen), capability)
}

// DrawOrder orders candidates by SHA-256 of (proposal id, agent id): the
// order a capability electorate is drawn in. Neither the proposer (it does
// not know the digest order before choosing an id, and an id decides once)
// nor the order the directory lists agents in (names that sort first,
// agents registered first) decides who votes; every id draws afresh among
// the eligible agents, one per host.
func DrawOrder(proposalID string, candidates []Voter) []Voter {
	draw := func(agentID string) []byte {
		h := sha256.New()
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(proposalID)))
		h.Write(n[:])
		h.Write([]byte(proposalID))
		h.Write([]byte(agentID))
		return h.Sum(nil)
	}
	out := slices.Clone(candidates)
	keys := make(map[string][]byte, len(out))
	for _, c := range out {
		keys[c.AgentID] = draw(c.AgentID)
	}
	slices.SortStableFunc(out, func(a, b Voter) int { return bytes.Compare(keys[a.AgentID], keys[b.AgentID]) })
	return out
}
