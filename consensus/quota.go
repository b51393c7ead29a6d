package consensus

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Quotas on what one client node may keep in the replicated state. Every
// replica holds that state, and a client is not trusted (a stolen
// certificate): without them one client could fill every server's memory
// and snapshots, or flood the idempotency keys until other nodes' retries
// are no longer recognised. They are part of the replicated protocol:
// constants, the same on every replica. Servers are not held to them.
const (
	// clientMaxAgents bounds the agents registered on one client node.
	clientMaxAgents = 10_000
	// clientMaxDecisionBytes bounds one decision record a client writes.
	clientMaxDecisionBytes = 256 << 10
	// clientMaxDedupKeys bounds the idempotency keys one client has
	// remembered at once (they expire after dedupTTLNanos).
	clientMaxDedupKeys = 10_000
)

// clientQuota refuses a client origin's command that would take it over a
// quota, and returns nil for servers and for commands within them.
func (s *state) clientQuota(txn *memdb.Txn, c *meshnodev1.Command) *meshnodev1.CommandResult {
	origin := c.GetOrigin()
	if isServerOrigin(txn, origin) {
		return nil
	}
	over := func(format string, args ...any) *meshnodev1.CommandResult {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_QUOTA_EXCEEDED,
			Message: fmt.Sprintf("node %s: ", origin) + fmt.Sprintf(format, args...)}
	}
	if c.GetIdempotencyKey() != "" && s.dedup.fromOrigin(origin) >= clientMaxDedupKeys {
		return over("%d writes are remembered for deduplication (limit %d per client node); they expire after %s, retry then",
			s.dedup.fromOrigin(origin), clientMaxDedupKeys, "10m")
	}
	switch op := c.GetOp().(type) {
	case *meshnodev1.Command_RegisterAgent:
		id := op.RegisterAgent.GetAgent().GetId()
		if first[*meshnodev1.Agent](txn, tableAgents, id) == nil && countAgents(txn, origin) >= clientMaxAgents {
			return over("%d agents registered (limit %d per client node); deregister some first", clientMaxAgents, clientMaxAgents)
		}
	case *meshnodev1.Command_PutDecision:
		if n := len(op.PutDecision.GetDecision().GetDecision()); n > clientMaxDecisionBytes {
			return over("decision %s is %d bytes (limit %d from a client node)", op.PutDecision.GetDecision().GetId(), n, clientMaxDecisionBytes)
		}
	}
	return nil
}

func countAgents(txn *memdb.Txn, node string) int {
	it, err := txn.Get(tableAgents, "node", node)
	if err != nil {
		return 0
	}
	n := 0
	for obj := it.Next(); obj != nil; obj = it.Next() {
		n++
	}
	return n
}
