// Package agent is the Go SDK for meshnode agents. An agent talks only to
// its local node, over the node's Unix socket; it never listens on a port.
//
// An Agent serves capabilities. Its zero value works; exported fields
// configure it, in the style of tailscale's tsnet.Server:
//
//	a := &agent.Agent{Name: "inventory"}
//	a.Handle(agent.Capability{Name: "inventory.lookup", Proficiency: agent.Expert},
//		func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
//			return &agent.Response{Payload: lookup(r.Payload)}, nil
//		})
//	err := a.Serve(ctx) // register, serve, reconnect; returns when ctx ends
//
// Serve registers the agent (committed cluster-wide through Raft), opens its
// delivery stream (InvokeService.Attach, which also carries the answers back;
// Serve and unary answers on a node without it) and runs each delivered call
// in its own goroutine, bounded by MaxInFlight. When the node restarts it
// reconnects with exponential backoff and jitter and registers again,
// without the program doing anything.
//
// A handler's ctx ends at the call's deadline, when the caller gives up
// (context.Cause is ErrCallCanceled), when the stream to the node breaks
// (ErrDisconnected) and when Serve's ctx ends. A returned *Error chooses the
// gRPC code the caller sees and whether the mesh may retry elsewhere. Calls a
// handler makes with its ctx name the handled call as their parent (the node
// detects cycles) and carry W3C trace context.
//
// HandleVote answers quorum votes. Each agent has an ed25519 vote key,
// persisted in KeyFile (mode 0600) or kept in memory; its public half is
// registered with the node and every vote is signed with it (quorum.NewVote).
// At most MaxVotesInFlight vote handlers run at once; a vote request beyond
// that is shed: answered with a signed Abstain that says why, and logged.
//
// Programs that only call use Dial and a Client: Call, Discover, ListAgents,
// Watch (an iterator that resumes after reconnects), Status, Propose and
// Decision. Package agenttest provides an in-memory node on a real socket for
// testing agents.
//
// The package speaks only the public protobuf API (proto/meshnode/v1); it
// must not import node internals. docs/sdk.md is the user guide.
package agent
