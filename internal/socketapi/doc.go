// Package socketapi serves the agent API on the node's Unix socket: one
// listener, split by each connection's first bytes into gRPC (HTTP/2,
// grpc-go) and Connect JSON (HTTP/1.1, transcoded to the same gRPC services
// by vanguard), with the kernel's peer credentials (SO_PEERCRED) attached to
// every request on either side.
//
// It owns: protocol sniffing, peer credentials, the socket file (stale
// socket replacement, mode 0660, removal on stop), the request size limit,
// the checks that turn a bad Connect JSON body into invalid_argument rather
// than internal, and the place where the error boundary is installed (an
// interceptor that hands every handler error to Config.MapError).
//
// It must not touch the product: it imports nothing of meshnode except the
// generated API (proto/meshnode/v1) and internal/connectjson, so the agent
// SDK's fake node (agent/agenttest) serves with exactly this code. What an
// error means (which package sentinel is which code) is not decided here;
// the node passes internal/apierror's table in through Config.MapError.
package socketapi
