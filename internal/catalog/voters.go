package catalog

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

var _ quorum.Directory = (*Catalog)(nil)

// Voters lists the agents a selection names (explicit ids, or everyone
// offering a capability) that can vote now: not flagged, with a vote key,
// and ready.
func (c *Catalog) Voters(ctx context.Context, sel *meshnodev1.VoterSelection) ([]quorum.Voter, error) {
	var agents []*meshnodev1.Agent
	if ids := sel.GetAgentIds(); len(ids) > 0 {
		for _, id := range ids {
			a, _, err := c.cfg.Registry.Agent(ctx, consensus.ReadOptions{}, id)
			if err == nil {
				agents = append(agents, a)
			}
		}
	} else {
		var err error
		agents, _, err = c.cfg.Registry.Agents(ctx, consensus.ReadOptions{}, consensus.AgentFilter{Capability: sel.GetCapability()})
		if err != nil {
			return nil, fmt.Errorf("find voters: %w", err)
		}
	}
	var out []quorum.Voter
	for _, a := range agents {
		if a.GetFlagged() || len(a.GetVotePublicKey()) != ed25519.PublicKeySize || !c.Ready(a) {
			continue
		}
		out = append(out, quorum.Voter{AgentID: a.GetId(), Node: a.GetNode(), PublicKey: ed25519.PublicKey(a.GetVotePublicKey())})
	}
	return out, nil
}

// VoteKeys looks up agents' registered vote keys in the local replica.
func (c *Catalog) VoteKeys(ctx context.Context) quorum.KeyLookup {
	return quorum.KeyLookupFunc(func(agentID string) (quorum.Voter, error) {
		a, _, err := c.cfg.Registry.Agent(ctx, consensus.ReadOptions{}, agentID)
		if err != nil {
			return quorum.Voter{}, fmt.Errorf("agent %s: %w", agentID, err)
		}
		if len(a.GetVotePublicKey()) != ed25519.PublicKeySize {
			return quorum.Voter{}, fmt.Errorf("agent %s has no vote key", agentID)
		}
		return quorum.Voter{AgentID: a.GetId(), Node: a.GetNode(), PublicKey: ed25519.PublicKey(a.GetVotePublicKey())}, nil
	})
}
