package consensus

import (
	"crypto/ed25519"
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	quorumrules "github.com/agentmesh/meshnode/quorum"
)

// What an origin may write. This is judged in the state machine, where the
// state changes, so a command that reaches the log by any path (a forwarded
// write, a follower that relays it, a leader that proposes it) is judged by
// the same deterministic code on every replica. The server that first
// receives a forwarded write stamps its origin from the peer's certificate
// (Store.stampOrigin); handlers only refuse early with the same rule.
//
// A server (a node with an admission record, which the Raft configuration
// itself creates, see applyConfiguration) may write anything. A client may
// write its own node record (never as a server), its own agents and their
// status, decisions of proposals its own agents made that no one has
// reviewed, and flags it proves with equivocation evidence. Policies,
// revocations, reviews, cleared flags, tokens and node or agent removal are
// admin commands whose authority is an operator's signature, whoever relays
// them (admin.go); CA records and admissions need a server.

// isServerOrigin reports whether origin is an admitted server in txn's state.
func isServerOrigin(txn *memdb.Txn, origin string) bool {
	return origin != "" && first[*meshnodev1.AdmittedServerRecord](txn, tableServers, origin) != nil
}

// authorizeOrigin returns nil when c's origin may apply c, and the refusal
// (the same on every replica) otherwise.
func authorizeOrigin(txn *memdb.Txn, c *meshnodev1.Command) *meshnodev1.CommandResult {
	origin := c.GetOrigin()
	if origin == "" {
		return denied("command has no origin node; every write is stamped with the node it comes from")
	}
	if node := writesForNode(c); node != "" && first[*meshnodev1.RevocationRecord](txn, tableRevocations, nodeRevocationKey(node)) != nil {
		return denied(fmt.Sprintf("node %s is revoked: its record and agents are kept for history and no longer change", node))
	}
	switch op := c.GetOp().(type) {
	case *meshnodev1.Command_Admin:
		return nil // the operator's signature is the authority, whoever relays it
	case *meshnodev1.Command_PutPolicy, *meshnodev1.Command_DeletePolicy:
		return denied("policy changes are admin commands: they need an operator's signature (meshnode policy set, with an operator key)")
	case *meshnodev1.Command_Revoke:
		return denied("revocations are admin commands: they need an operator's signature (meshnode node revoke, with an operator key)")
	case *meshnodev1.Command_ClearFlag:
		return denied("clearing a flag is an admin command: it needs a reviewer's signature (meshnode quorum clear-flag, with an operator key)")
	case *meshnodev1.Command_PutDecision:
		if op.PutDecision.GetDecision().GetStatus() == DecisionReviewed {
			return denied("a review is an admin command: it needs a reviewer's signature (meshnode quorum review, with an operator key)")
		}
	}
	if isServerOrigin(txn, origin) {
		return nil
	}
	if err := clientMay(txn, origin, c); err != nil {
		return denied(err.Error())
	}
	return nil
}

// authorize judges c against the current state, for handlers that refuse
// early; the state machine judges again at apply.
func (s *state) authorize(c *meshnodev1.Command) *meshnodev1.CommandResult {
	txn, _ := s.read()
	return authorizeOrigin(txn, c)
}

// writesForNode names the node whose own records c writes (its node record,
// an agent on it), or "".
func writesForNode(c *meshnodev1.Command) string {
	switch op := c.GetOp().(type) {
	case *meshnodev1.Command_RegisterNode:
		return op.RegisterNode.GetNode().GetName()
	case *meshnodev1.Command_RegisterAgent:
		return op.RegisterAgent.GetAgent().GetNode()
	case *meshnodev1.Command_SetAgentStatus:
		node, _, _ := strings.Cut(op.SetAgentStatus.GetId(), "/")
		return node
	}
	return ""
}

func denied(msg string) *meshnodev1.CommandResult {
	return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_PERMISSION_DENIED, Message: msg}
}

// clientMay is the client allow-list.
func clientMay(txn *memdb.Txn, origin string, c *meshnodev1.Command) error {
	own := func(agentID string) bool { return strings.HasPrefix(agentID, origin+"/") }
	refuse := func(what string) error {
		return fmt.Errorf("node %s is a client: it may write only its own node record, its own agents and its own agents' decisions, not %s; run the command against a server's socket", origin, what)
	}
	switch op := c.GetOp().(type) {
	case *meshnodev1.Command_RegisterNode:
		n := op.RegisterNode.GetNode()
		if n.GetName() != origin {
			return refuse("node " + n.GetName() + "'s record")
		}
		if n.GetRole() == "server" {
			return refuse("a record that calls it a server (servers are admitted by a server token)")
		}
		return nil
	case *meshnodev1.Command_RegisterAgent:
		if a := op.RegisterAgent.GetAgent(); a.GetNode() != origin || !own(a.GetId()) {
			return refuse("agent " + a.GetId() + " on node " + a.GetNode())
		}
		return nil
	case *meshnodev1.Command_DeregisterAgent:
		if !own(op.DeregisterAgent.GetId()) {
			return refuse("agent " + op.DeregisterAgent.GetId())
		}
		return nil
	case *meshnodev1.Command_SetAgentStatus:
		if !own(op.SetAgentStatus.GetId()) {
			return refuse("agent " + op.SetAgentStatus.GetId())
		}
		return nil
	case *meshnodev1.Command_PutDecision:
		return clientMayPutDecision(txn, origin, op.PutDecision.GetDecision(), refuse)
	case *meshnodev1.Command_FlagAgent:
		return clientMayFlag(txn, op.FlagAgent, refuse)
	}
	return refuse(opName(c))
}

// clientMayPutDecision lets a client record decisions of its own agents'
// proposals (the coordinator runs on the proposer's node), never a review
// and never over another node's record.
func clientMayPutDecision(txn *memdb.Txn, origin string, rec *meshnodev1.DecisionRecord, refuse func(string) error) error {
	if rec.GetStatus() == DecisionReviewed {
		return refuse("a reviewed decision (reviews are made on servers)")
	}
	if proposerNode(rec) != origin {
		return refuse("decision " + rec.GetId() + " of a proposal made on another node")
	}
	if old := first[*meshnodev1.DecisionRecord](txn, tableDecisions, rec.GetId()); old != nil && proposerNode(old) != origin {
		return refuse("decision " + rec.GetId() + ", recorded for a proposal made on another node")
	}
	return nil
}

// clientMayFlag lets any node flag an agent whose equivocation it can
// prove: two different votes on one proposal, signed by the key the state
// registers for the agent. Without such evidence a flag is an admin write.
func clientMayFlag(txn *memdb.Txn, f *meshnodev1.FlagAgentCommand, refuse func(string) error) error {
	ev := f.GetEvidence()
	if ev == nil {
		return refuse("a flag without equivocation evidence")
	}
	if ev.GetAgentId() != f.GetId() {
		return refuse("a flag of agent " + f.GetId() + " with evidence against " + ev.GetAgentId())
	}
	if err := quorumrules.VerifyEquivocation(ev, stateKeys{txn}); err != nil {
		return refuse(fmt.Sprintf("a flag whose evidence does not verify (%v)", err))
	}
	return nil
}

// stateKeys looks up vote keys in the state being applied.
type stateKeys struct{ txn *memdb.Txn }

func (k stateKeys) Voter(agentID string) (quorumrules.Voter, error) {
	a := first[*meshnodev1.Agent](k.txn, tableAgents, agentID)
	if a == nil || len(a.GetVotePublicKey()) != ed25519.PublicKeySize {
		return quorumrules.Voter{}, fmt.Errorf("agent %q has no registered vote key", agentID)
	}
	return quorumrules.Voter{AgentID: agentID, Node: a.GetNode(), PublicKey: ed25519.PublicKey(a.GetVotePublicKey())}, nil
}

func proposerNode(rec *meshnodev1.DecisionRecord) string {
	d := &meshnodev1.Decision{}
	if err := proto.Unmarshal(rec.GetDecision(), d); err != nil {
		return ""
	}
	return d.GetProposal().GetProposerNode()
}

// opName names a command's operation for messages ("revoke", "put_policy").
func opName(c *meshnodev1.Command) string {
	if f := c.ProtoReflect().WhichOneof(c.ProtoReflect().Descriptor().Oneofs().ByName("op")); f != nil {
		return string(f.Name())
	}
	return "an empty command"
}

// applyConfiguration records every server of a committed Raft configuration
// as admitted. Being in the configuration is proof of admission, and the
// state machine learns it in log order, so whether an origin is a server
// is decided from replicated state alone. Revoked names are left out.
func (s *state) applyConfiguration(index uint64, conf raft.Configuration) {
	s.transact(index, func(txn *memdb.Txn, _ uint64) {
		for _, sv := range conf.Servers {
			name := string(sv.ID)
			if first[*meshnodev1.AdmittedServerRecord](txn, tableServers, name) != nil ||
				first[*meshnodev1.RevocationRecord](txn, tableRevocations, nodeRevocationKey(name)) != nil {
				continue
			}
			if err := txn.Insert(tableServers, &meshnodev1.AdmittedServerRecord{Node: name, CreateIndex: index}); err != nil {
				panic(fmt.Sprintf("consensus: recording server %s at index %d: %v", name, index, err)) // schema bug
			}
		}
	})
}

// StoreConfiguration implements raft.ConfigurationStore.
func (f *fsm) StoreConfiguration(index uint64, conf raft.Configuration) {
	f.st.applyConfiguration(index, conf)
}

var _ raft.ConfigurationStore = (*fsm)(nil)
