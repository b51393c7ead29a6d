// Package routing chooses which agent serves a call and makes the call
// resilient. It owns candidate selection (capability, attribute constraints,
// proficiency, cost, readiness), the selection policies (round_robin,
// least_loaded, latency, cost) composed with quality tiers, expert
// reservation, caller preference and locality; the router's own per-agent
// measurements merged with gossiped load; per-agent circuit breakers and
// per-capability fallback; safe retries with exponential full-jitter backoff
// and a Linkerd-style retry budget; deadline propagation with a per-hop
// reserve; cycle and hop-limit checks; and OpenTelemetry spans and W3C trace
// context helpers.
//
// Everything is pure logic over injected interfaces: a clock.Clock (a fake in
// tests advances simulated time), a seeded *rand.Rand, and an Invoker that
// performs one attempt. The package does no I/O of its own and starts no
// goroutines. Policies arrive as meshnodev1.RoutingPolicy (policy.proto) and
// are validated by Validate / PolicyFromProto.
//
// Composition, per attempt: filter (hard exclusions) -> a half-open probe
// if one is due -> agents not yet tried by this call -> caller-preferred
// agents -> best quality tier -> experts kept for expert work -> same node
// -> the policy's score. Every step after the filter is a preference: it
// narrows the set only if something is left.
//
// It must not import node, transport, consensus or gossip: the node converts
// registry records and gossip into Candidates (CandidateFromAgent) and
// implements Invoker over the peer transport. See docs/routing.md.
package routing
