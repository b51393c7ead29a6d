// Package consensus owns the replicated state of the cluster: the registry of
// nodes and agents, policies, CA records, used join tokens, revocations and
// quorum decisions.
//
// One facade, Store, runs in one of two modes (Config.Server):
//
//   - Server: a hashicorp/raft member with raft-boltdb/v2 (fsync on) and a
//     file snapshot store under <DataDir>/raft, over the transport's
//     raft.StreamLayer. The FSM applies versioned protobuf commands
//     (meshnodev1.Command, batched into meshnodev1.CommandBatch log entries)
//     to an in-memory go-memdb database. The leader's autopilot adds servers
//     as non-voters, promotes them, replaces failed voters and removes dead
//     servers, never dropping below quorum by its own action.
//   - Client: a read-only replica fed by a server's change stream
//     (snapshot, then ordered events), re-subscribing elsewhere from its own
//     index when the server goes. CA records, tokens and dedup entries never
//     reach clients.
//
// On both, Apply forwards writes to the leader (retrying across leader
// changes; idempotency keys make retries apply once), reads are Stale (local)
// or Consistent (read-index: leadership confirmed, then wait for the index),
// and Watch pushes filtered registry changes.
//
// The network is the Network interface (NetworkFromTransport adapts the
// QUIC endpoint); membership comes from the node through ServerAlive,
// ServerFailed and ServerLeft. See docs/consensus.md.
//
// It must not import node or routing.
package consensus
