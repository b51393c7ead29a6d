// Package consensus owns the Raft group: setup over the transport's stream
// layer, the FSM (registry of nodes and agents, policy, CA records, quorum
// decisions), snapshots, write forwarding to the leader, read consistency
// modes, watches, client replicas and voter management.
//
// It must not import node or routing.
package consensus
