package routing

import (
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// CandidateFromAgent is the one builder of candidates: the candidate for
// capability from a registry record and the freshest load the node has for
// it (nil when nobody has reported one). It reports false when the agent
// does not offer the capability.
//
// Readiness: a reported load decides it (only "ready" is ready: the agent's
// node, or this node's hub for its own agents, knows better than a registry
// status written a moment ago); without a report, the registry status does.
// A flagged agent (it equivocated) is never ready. Draining comes from
// either source. A zero success rate in load is read as unknown, since
// gossip cannot tell "no calls yet" from "all failed" and the router's own
// measurements catch a failing agent within a few calls.
func CandidateFromAgent(a *meshnodev1.Agent, capability string, load *meshnodev1.AgentLoad, nodeAlive bool) (Candidate, bool) {
	var pc *meshnodev1.Capability
	for _, c := range a.GetCapabilities() {
		if c.GetName() == capability {
			pc = c
			break
		}
	}
	if pc == nil || a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_REVOKED {
		return Candidate{}, false
	}
	ready := a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_READY
	c := Candidate{
		AgentID: a.GetId(),
		Node:    a.GetNode(),
		Capability: CandidateCapability{
			Name:           pc.GetName(),
			Attributes:     pc.GetAttributes(), // read-only: shared with the registry replica
			Proficiency:    Proficiency(pc.GetProficiency()),
			Cost:           pc.GetCost(),
			MaxConcurrency: int(pc.GetMaxConcurrency()),
		},
		Draining:  a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_DRAINING,
		NodeAlive: nodeAlive,
	}
	if load != nil {
		ready = load.GetStatus() == "ready"
		c.Draining = c.Draining || load.GetStatus() == "draining"
		c.Load = GossipLoad{
			InFlight:       int(load.GetInFlight()),
			Capacity:       int(load.GetCapacity()),
			EWMALatency:    time.Duration(load.GetEwmaLatencyMs() * float64(time.Millisecond)),
			SuccessRate:    load.GetSuccessRate(),
			HasSuccessRate: load.GetSuccessRate() > 0,
		}
	}
	c.Ready = ready && !a.GetFlagged()
	return c, true
}

// RequestFromCall assembles a Request from a call's wire fields: the
// overrides the caller sent (nil for none), the routing metadata (nil for a
// top-level call), and the policy in force. Errors are *FieldError, for
// InvalidArgument.
func RequestFromCall(capability string, overrides *meshnodev1.RoutingOverrides, meta *meshnodev1.RoutingMetadata, pol Policy) (Request, error) {
	o, err := OverridesFromProto(overrides)
	if err != nil {
		return Request{}, err
	}
	m, err := MetadataFromProto(meta)
	if err != nil {
		return Request{}, err
	}
	return Request{Capability: capability, Overrides: o, Meta: m, Policy: pol}, nil
}

// PolicyFor returns the policy in force for capability: its own stored
// policy, else the cluster default (stored under "*" or ""), else the
// built-in defaults; and the key it came from ("" for built-in). lookup
// returns nil when nothing is stored under a key. A stored policy that no
// longer validates (it was validated on SetPolicy, so only after a
// downgrade) yields the error; callers should log it and use the defaults.
func PolicyFor(capability string, lookup func(key string) *meshnodev1.RoutingPolicy) (Policy, string, error) {
	keys := []string{capability, "*", ""}
	if IsDefaultKey(capability) {
		keys = keys[1:]
	}
	for _, k := range keys {
		if p := lookup(k); p != nil {
			pol, err := PolicyFromProto(p)
			return pol, k, err
		}
	}
	pol := DefaultPolicy()
	pol.Capability = capability
	return pol, "", nil
}
