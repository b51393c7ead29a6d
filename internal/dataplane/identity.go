package dataplane

import (
	"strings"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// verifyCaller decides who called, from what this node can verify, for a
// call that peer fromNode (authenticated by mTLS) forwarded. upstream is the
// chain before the callee, outermost first; its last entry is the calling
// agent, or it is empty for a call no agent made.
//
// What is checked: the calling agent's node part is fromNode, so a node can
// speak only for its own agents; and the delivery's caller_agent_id, if set,
// agrees with the chain. What cannot be checked here: the entries before the
// caller name agents on nodes further back, which only the node of each
// hop verified when the call reached it (and which a compromised node in
// the middle of the chain could rewrite). Authorization therefore decides on
// the verified caller, never on earlier chain entries.
//
// The caller the handler sees is set from the result, never from the wire.
func verifyCaller(fromNode string, upstream []string, d *meshnodev1.Delivery) (string, error) {
	caller := ""
	if len(upstream) > 0 {
		caller = upstream[len(upstream)-1]
	}
	if caller != "" && NodeOf(caller) != fromNode {
		return "", status.Errorf(codes.PermissionDenied,
			"caller agent %s is not on node %s, which forwarded the call: a node may only call for its own agents", caller, fromNode)
	}
	if claimed := d.GetCallerAgentId(); claimed != "" && claimed != caller {
		return "", status.Errorf(codes.PermissionDenied,
			"delivery names caller %s but the call chain from node %s ends with %q", claimed, fromNode, caller)
	}
	return caller, nil
}

// NodeOf is the node part of an agent id "<node>/<name>", "" if it has none.
func NodeOf(agentID string) string {
	node, _, ok := strings.Cut(agentID, "/")
	if !ok {
		return ""
	}
	return node
}
