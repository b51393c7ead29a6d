// Package gossip owns membership and load: a hashicorp/memberlist delegate
// that joins through a seed list, reports membership events, and spreads
// signed per-node and per-agent load and health. Gossip is a hint, never
// authority: authority is Raft state and signatures.
//
// It must not import node or consensus.
package gossip
