// Package agent is the Go SDK that agents import to join the mesh through
// their local node's Unix socket: Dial, Register, Handle a capability,
// Serve, Call, Discover, Watch and vote.
//
// It must not import node internals; it speaks only the public protobuf API.
package agent
