// Package apierror is the agent API's one error boundary: it turns the
// sentinel and typed errors of the product's packages (consensus, pki,
// quorum, routing) and the context package into gRPC statuses, from one
// table. The socket installs Map as an interceptor on every RPC, so the
// gRPC and the Connect JSON sides answer with the same codes.
//
// Rules: an error that already is a gRPC status passes through; a known
// sentinel maps by errors.Is, first match in Table wins; anything else is
// Internal with its message. A bad request is InvalidArgument, never
// Internal; Unavailable is only for what a retry can fix. Messages are
// kept to one line.
//
// It owns the table and nothing else: no I/O, no state. It must not import
// node, transport, gossip or agent; and because it imports consensus and
// pki, neither the agent SDK nor its fake node (agent/agenttest) may
// import it (internal/socketapi takes the mapper as a Config field).
package apierror
