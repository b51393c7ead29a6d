// Package connectjson holds what the node's socket and the agenttest fake
// node both need to serve Connect JSON the same way: the handler that lets
// a plain JSON POST through as Connect unary. It imports only net/http.
package connectjson
