// Package hub owns the agents attached to one node: which process owns each
// one (the kernel's peer credentials of the process that registered it), its
// Serve or Attach stream, the calls and vote requests pushed onto that stream
// and the answers that come back (one correlator for both), and the
// background loop that adopts agents registered before a restart and
// deregisters those whose stream did not come back within the grace period.
//
// The hub is shared by the node and by the agent SDK's fake node
// (agent/agenttest), so both run the one serve loop and the one stream
// bookkeeping. It therefore imports nothing of the product but the API
// types (proto/meshnode/v1). It must not touch the registry, gossip,
// routing, quorum rules or the socket: it reaches the rest of the node only
// through the callbacks in its Config (StatusChanged, Deregister,
// Registered, SecondVote, Limit), and the gRPC handlers stay in the node as
// thin wrappers around Serve, Attach, Respond and Vote.
//
// Errors are *Error values wrapping the sentinels in errors.go; callers
// branch with errors.Is, and the GRPCStatus method gives the code the agent
// API answers with.
package hub
