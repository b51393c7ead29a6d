// Package dataplane carries calls between agents: the caller half (a Call
// from the socket is validated, given its deadline and chain once, and
// handed to the router, which owns every attempt end to end) and the callee
// half (a call a peer node forwarded to one of this node's agents is checked
// once, by routing.CheckForwarded, and delivered through the hub). Vote
// requests for the quorum coordinator travel the same way.
//
// It holds no registry state: candidates, policies and addresses come from
// the catalog, local agents from the hub, and bytes between nodes from the
// peer transport behind the Peers interface. It must not import node or the
// agent SDK.
package dataplane
