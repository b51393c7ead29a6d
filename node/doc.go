// Package node is the composition root of a meshnode daemon. It wires every
// component (pki, transport, consensus, gossip, routing, quorum), owns their
// lifecycle (start in dependency order, stop in reverse within a bounded
// time), locks the data directory, and serves the agent API on the Unix
// socket: gRPC over HTTP/2 via grpc-go and Connect JSON over HTTP/1.1 via
// vanguard, told apart by the first bytes of each connection.
//
// node is the only package that knows all the others; no other package may
// import it.
package node
