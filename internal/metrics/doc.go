// Package metrics owns the node's Prometheus registry: the call metrics of
// the data plane and the router (Calls, which implements their observer
// interfaces), gauges read from other components through plain functions,
// the bridge that carries hashicorp/raft's and memberlist's go-metrics
// into the registry, and the /metrics HTTP listener.
//
// Cardinality is bounded: agent and capability label values are admitted
// up to Config.MaxAgents each; later ones are folded under "other" and
// counted (meshnode_metrics_folded_total).
//
// It may read the data plane's and router's event types; it must not import
// the node, the transport, consensus, gossip, the SDK or the socket edge:
// everything else it shows reaches it as a function the node passes in.
package metrics
