// Package routing chooses which agent serves a call: candidate selection
// by capability, constraints and proficiency; policies (round robin, least
// loaded, latency, cost, quality tiers, locality); circuit breakers; retries
// with budgets; deadlines; cycle and hop limits. The policies are pure logic
// driven by a clock interface.
//
// It must not import node.
package routing
