package main

import (
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestAgentStatusOneWord(t *testing.T) {
	agent := func(node string, st meshnodev1.AgentStatus) *meshnodev1.Agent {
		return &meshnodev1.Agent{Id: node + "-a", Node: node, Status: st}
	}
	for _, tc := range []struct {
		name  string
		agent *meshnodev1.Agent
		load  *meshnodev1.AgentLoad
		want  string
	}{
		{"revoked beats a stale ready load", agent("n2", meshnodev1.AgentStatus_AGENT_STATUS_REVOKED), &meshnodev1.AgentLoad{Status: "ready"}, "revoked"},
		{"revoked with no load", agent("n2", meshnodev1.AgentStatus_AGENT_STATUS_REVOKED), nil, "revoked"},
		{"live load beats the registry", agent("n1", meshnodev1.AgentStatus_AGENT_STATUS_READY), &meshnodev1.AgentLoad{Status: "unknown"}, "unknown"},
		{"draining load", agent("n1", meshnodev1.AgentStatus_AGENT_STATUS_READY), &meshnodev1.AgentLoad{Status: "draining"}, "draining"},
		{"restarting node takes no calls", agent("n1", meshnodev1.AgentStatus_AGENT_STATUS_READY), &meshnodev1.AgentLoad{Status: "restarting"}, "draining"},
		{"registry registered", agent("n1", meshnodev1.AgentStatus_AGENT_STATUS_REGISTERED), nil, "registered"},
		{"registry disconnected", agent("n1", meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED), nil, "disconnected"},
		{"unspecified", agent("n1", meshnodev1.AgentStatus_AGENT_STATUS_UNSPECIFIED), nil, "unknown"},
	} {
		if got := agentStatus(tc.agent, tc.load); got != tc.want {
			t.Errorf("%s: agentStatus = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestAgentsHidesRevokedAndMatchesDiscover: 'agents' leaves out a revoked
// node's agents unless --all, and an agent on a node nobody sees alive is
// unknown there as in discover, not the stale "ready" of its record.
func TestAgentsHidesRevokedAndMatchesDiscover(t *testing.T) {
	agents := []*meshnodev1.Agent{
		{Id: "a1", Node: "n1", Status: meshnodev1.AgentStatus_AGENT_STATUS_READY},
		{Id: "a2", Node: "n2", Status: meshnodev1.AgentStatus_AGENT_STATUS_REVOKED},
		{Id: "a3", Node: "n3", Status: meshnodev1.AgentStatus_AGENT_STATUS_READY},
	}
	members := map[string]string{"n1": "alive", "n2": "dead", "n3": "dead"}
	words := func(rows []agentRow) map[string]string {
		m := map[string]string{}
		for _, r := range rows {
			m[r.agent.GetId()] = r.status
		}
		return m
	}
	got := words(agentRows(agents, members, false))
	if len(got) != 2 || got["a1"] != "ready" || got["a3"] != "unknown" {
		t.Fatalf("agents without --all = %v, want a1 ready, a3 unknown, revoked a2 hidden", got)
	}
	got = words(agentRows(agents, members, true))
	if got["a2"] != "revoked" || len(got) != 3 {
		t.Fatalf("agents --all = %v, want a2 shown as revoked", got)
	}
	// discover's load for a3 (its node is not alive) is "unknown": same word.
	if d := agentStatus(agents[2], &meshnodev1.AgentLoad{Status: "unknown"}); d != got["a3"] {
		t.Fatalf("discover shows %q, agents shows %q", d, got["a3"])
	}
}
