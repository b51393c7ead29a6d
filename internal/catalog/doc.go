// Package catalog is the node's one merge of what it knows about agents and
// nodes: the registry replica (consensus), what gossip says right now, and
// the agents attached to this node (the hub). From those it answers every
// question the data plane, the quorum coordinator and the API ask: the
// candidates and policy for a capability (routing.Resolver), the voters for
// a selection (quorum.Directory), vote keys, node addresses, node gossip
// keys and agent owners (gossip.KeyResolver, gossip.AgentOwners), the load
// Discover reports, and the load report this node gossips.
//
// It reads; it never writes cluster state, opens no connection and starts
// no goroutine. Registry-derived answers are cached per applied index, so
// the call path opens no read transaction while the registry is unchanged.
// It must not import node, transport or the agent SDK.
package catalog
