// Package gossip owns membership and load: hashicorp/memberlist over the
// peer transport (QUIC datagrams and streams), a seed-list join that keeps
// retrying, node metadata (role, QUIC address, version, SPIFFE id), and the
// signed per-node and per-agent load and health every node publishes.
//
// What it owns:
//   - Gossip: New(Config), Join(ctx, seeds), Leave(timeout), Shutdown, Close.
//   - The local view: Members, Member, NodeAlive, Load(agentID), NodeAgents,
//     and Subscribe for join/leave/fail/update/load events. memberlist calls
//     our delegates with its locks held, so nothing on that path blocks:
//     events are queued per subscriber.
//   - SetLocalLoad: this node's load table, broadcast on significant change
//     (coalesced over LoadMinInterval; status changes go at once) and re-sent every LoadRefreshInterval,
//     split into messages of at most MaxMessageBytes, each signed with the
//     node's key (Config.Signer) and stamped with the node's sequence number.
//     Receivers verify with Config.Keys; relays forward messages byte for
//     byte, so they cannot forge or alter another node's entries.
//   - The memberlist configuration presets (DefaultConfig for LANs,
//     LocalConfig for tests) and the adapter of memberlist's log lines to slog.
//
// Gossip is a hint, never authority: authority is Raft state and
// signatures. A node's signature proves only that the node said it; the
// registry (Config.Owners) decides which agents a node may speak for.
//
// It must not import node or consensus. See docs/gossip.md.
package gossip
