// Package transport owns the node's one QUIC endpoint (one UDP port, ALPN
// meshnode/1, TLS 1.3 with mutual authentication) and the channels
// multiplexed on it: a raft.StreamLayer, a memberlist.NodeAwareTransport and
// typed request/response RPC between nodes.
//
// It must not import node, consensus or gossip: they plug into it, not the
// other way round. TLS material comes from pki through a small interface so
// certificates rotate without a restart.
package transport
