// Package transport owns the node's one QUIC endpoint (one UDP port, ALPN
// meshnode/1, TLS 1.3 with mutual authentication) and the channels
// multiplexed on it:
//
//   - unary RPC (Handle/Call, HandleProto/Invoke) on pooled long-lived
//     streams: one request at a time per stream, so the hot path never pays
//     a stream open; errors carry gRPC status codes; cancellation resets the
//     stream and cancels the remote handler; the deadline travels along;
//   - streaming RPC (HandleStream/OpenStream), one QUIC stream per call;
//   - a raft.StreamLayer (RaftLayer) and a memberlist.NodeAwareTransport
//     (Memberlist: packets as QUIC datagrams, a one-frame stream when too
//     large);
//   - join RPC (HandleJoin/CallJoin) on ALPN meshnode-join/1 for nodes that
//     have no certificate yet.
//
// Every stream starts with a Channel byte; messages are frames with a
// 4-byte big-endian length prefix and a hard size cap, read in chunks as
// bytes arrive and under a per-frame deadline. Malformed or slow input
// resets only the offending stream. Join connections (no certificate) get
// small frames and caps on connections per source, streams and idle time.
// Refusals are counted (Endpoint.Refusals) and logged at most once a
// minute per peer. See docs/transport.md.
//
// Who may do what is the node's knowledge, handed in as hooks: RaftPeer
// (only admitted servers speak Raft), ExpectedPeer (a dial reaches the
// node expected at the address, or fails), and ClosePeersBySerial /
// ClosePeersWhere (a revocation ends open connections).
//
// It must not import node, consensus or gossip: they plug into it, not the
// other way round. TLS material comes from pki through TLSProvider so
// certificates rotate without a restart. transporttest has test CAs and
// endpoints; faultconn injects loss, delay and partitions.
package transport
