// Package traffic keeps a node's traffic matrix: one edge per caller agent,
// callee agent and capability, seen from the side of the call this node
// was on (the caller's node measures end to end, the callee's node the
// handler), with request counts, errors and a latency histogram over
// rolling 10 s, 1 min and 10 min windows. Edges merge across nodes by
// adding counts and histograms, which is why quantiles come from fixed
// buckets rather than samples.
//
// It is memory only: it implements the data plane's Observer, and the node
// serves its snapshots on the agent API and to peers. It must not import
// the node, the transport or the socket edge.
package traffic
