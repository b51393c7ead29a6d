// Package opsign is the client side of admin commands: a gRPC interceptor
// that signs the requests of admin methods with an operator's key, the way
// the meshnode CLI and any Go operator tool call a node. The server side
// (the state machine's verification) is in consensus and operator.
//
// It may import operator, internal/api (for the header name) and the API
// types, never the node or the CLI.
package opsign
