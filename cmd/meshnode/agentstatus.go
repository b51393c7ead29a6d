package main

import (
	"strings"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// agentStatus is the one status word every command shows for an agent:
// ready, registered, draining, disconnected, revoked or unknown. A revoked
// agent is revoked whatever its load says; otherwise the freshest load
// (gossip or the serving node's hub) wins over the committed registry
// status, which may be stale when the agent's node died without saying so.
// load is nil when no node has reported one.
func agentStatus(a *meshnodev1.Agent, load *meshnodev1.AgentLoad) string {
	if a.GetStatus() == meshnodev1.AgentStatus_AGENT_STATUS_REVOKED {
		return "revoked"
	}
	if load != nil && load.GetStatus() != "" {
		switch s := load.GetStatus(); s {
		case "ready", "draining", "unknown":
			return s
		case "restarting":
			// A restarting node takes no new calls, as a draining one.
			return "draining"
		}
		return "unknown"
	}
	switch a.GetStatus() {
	case meshnodev1.AgentStatus_AGENT_STATUS_READY, meshnodev1.AgentStatus_AGENT_STATUS_REGISTERED,
		meshnodev1.AgentStatus_AGENT_STATUS_DRAINING, meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED:
		return strings.ToLower(strings.TrimPrefix(a.GetStatus().String(), "AGENT_STATUS_"))
	}
	return "unknown"
}

// listedLoad is the load 'agents' knows for an agent from the member list:
// an agent on a node that gossip does not see alive is unknown, as discover
// shows it; otherwise nil, and the registry status stands.
func listedLoad(a *meshnodev1.Agent, members map[string]string) *meshnodev1.AgentLoad {
	if members == nil {
		return nil
	}
	switch members[a.GetNode()] {
	case "alive", "suspect":
		return nil
	}
	return &meshnodev1.AgentLoad{Status: "unknown"}
}

// agentRow is one line of 'meshnode agents'.
type agentRow struct {
	agent  *meshnodev1.Agent
	status string
}

// agentRows gives each agent its status word and leaves out revoked ones
// unless all: a revoked node's agents are kept in the registry for history,
// not as part of the mesh.
func agentRows(agents []*meshnodev1.Agent, members map[string]string, all bool) []agentRow {
	var rows []agentRow
	for _, a := range agents {
		st := agentStatus(a, listedLoad(a, members))
		if st == "revoked" && !all {
			continue
		}
		rows = append(rows, agentRow{agent: a, status: st})
	}
	return rows
}
