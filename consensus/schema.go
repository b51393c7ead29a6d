package consensus

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Table names of the in-memory state. The order of snapshotTables is the
// order records appear in a snapshot: never reorder it without bumping the
// snapshot version.
const (
	tableNodes          = "nodes"
	tableAgents         = "agents"
	tablePolicies       = "policies"
	tableCA             = "ca"
	tableTokens         = "tokens"
	tableRevocations    = "revocations"
	tableDecisions      = "decisions"
	tableDedup          = "dedup"
	tableServers        = "servers"
	tableBundle         = "trust_bundle"
	tableOperators      = "operators"
	tableNonces         = "nonces"
	tableIssued         = "issued_tokens"
	tableQuorumPolicies = "quorum_policies"
	tableAgentNames     = "agent_names"
	tableAgentKeys      = "agent_keys"
	tableAuthz          = "authz_policy"
	tableMeta           = "meta"
)

var snapshotTables = []string{
	tableNodes, tableAgents, tablePolicies, tableCA, tableTokens,
	tableRevocations, tableDecisions, tableDedup, tableServers,
	tableBundle, tableOperators, tableNonces, tableIssued, tableQuorumPolicies,
	tableAgentNames, tableAgentKeys, tableAuthz,
}

// secretTables never leave the servers: client replicas and watches do not
// see them. CA records can hold private keys; tokens, dedup entries and
// server admissions are server bookkeeping.
var secretTables = map[string]bool{tableCA: true, tableTokens: true, tableDedup: true, tableServers: true, tableNonces: true}

// metaRow stores the last applied Raft index inside the database, so a read
// transaction knows exactly which index its view corresponds to.
type metaRow struct {
	Key   string
	Index uint64
}

const metaApplied = "applied"

func stateSchema() *memdb.DBSchema {
	id := func(field string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: field}}
	}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableNodes: {Name: tableNodes, Indexes: map[string]*memdb.IndexSchema{"id": id("Name")}},
		tableAgents: {Name: tableAgents, Indexes: map[string]*memdb.IndexSchema{
			"id":         id("Id"),
			"node":       {Name: "node", Indexer: &memdb.StringFieldIndex{Field: "Node"}},
			"capability": {Name: "capability", AllowMissing: true, Indexer: capabilityIndexer{}},
		}},
		tablePolicies: {Name: tablePolicies, Indexes: map[string]*memdb.IndexSchema{"id": id("Key")}},
		tableCA:       {Name: tableCA, Indexes: map[string]*memdb.IndexSchema{"id": id("Key")}},
		tableTokens: {Name: tableTokens, Indexes: map[string]*memdb.IndexSchema{
			"id":     id("Id"),
			"expiry": {Name: "expiry", Indexer: &memdb.UintFieldIndex{Field: "ExpiresUnixNano"}},
		}},
		tableRevocations: {Name: tableRevocations, Indexes: map[string]*memdb.IndexSchema{"id": id("Key")}},
		tableDecisions: {Name: tableDecisions, Indexes: map[string]*memdb.IndexSchema{
			"id":     id("Id"),
			"status": {Name: "status", Indexer: &memdb.StringFieldIndex{Field: "Status"}},
			// Newest-first paging (decisions.go), over all decisions and
			// within one status.
			"created":        {Name: "created", Unique: true, Indexer: decisionOrder{}},
			"status_created": {Name: "status_created", Unique: true, Indexer: decisionOrder{byStatus: true}},
		}},
		tableServers:   {Name: tableServers, Indexes: map[string]*memdb.IndexSchema{"id": id("Node")}},
		tableBundle:    {Name: tableBundle, Indexes: map[string]*memdb.IndexSchema{"id": id("Key")}},
		tableOperators: {Name: tableOperators, Indexes: map[string]*memdb.IndexSchema{"id": id("Name")}},
		tableNonces: {Name: tableNonces, Indexes: map[string]*memdb.IndexSchema{
			"id":     id("Key"),
			"expiry": {Name: "expiry", Indexer: &memdb.UintFieldIndex{Field: "ExpiresUnixNano"}},
		}},
		tableQuorumPolicies: {Name: tableQuorumPolicies, Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: quorumPolicyIndexer{}}}},
		tableAgentNames:     {Name: tableAgentNames, Indexes: map[string]*memdb.IndexSchema{"id": id("Id")}},
		tableAgentKeys: {Name: tableAgentKeys, Indexes: map[string]*memdb.IndexSchema{
			"id":    {Name: "id", Unique: true, Indexer: keyRecordIndexer{}},
			"agent": {Name: "agent", Indexer: &memdb.StringFieldIndex{Field: "AgentId"}},
			"key":   {Name: "key", Indexer: keyIndexer{}},
		}},
		tableIssued: {Name: tableIssued, Indexes: map[string]*memdb.IndexSchema{"id": id("Id")}},
		tableAuthz:  {Name: tableAuthz, Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: authzIndexer{}}}},
		tableMeta:   {Name: tableMeta, Indexes: map[string]*memdb.IndexSchema{"id": id("Key")}},
	}}
}

// capabilityIndexer indexes an agent under each capability name it offers.
type capabilityIndexer struct{}

func (capabilityIndexer) FromObject(raw any) (bool, [][]byte, error) {
	a, ok := raw.(*meshnodev1.Agent)
	if !ok {
		return false, nil, fmt.Errorf("capability index: object is %T, not *Agent", raw)
	}
	seen := make(map[string]bool, len(a.GetCapabilities()))
	var vals [][]byte
	for _, c := range a.GetCapabilities() {
		if c.GetName() == "" || seen[c.GetName()] {
			continue
		}
		seen[c.GetName()] = true
		vals = append(vals, append([]byte(c.GetName()), 0))
	}
	return len(vals) > 0, vals, nil
}

func (capabilityIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("capability index: want 1 argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("capability index: argument is %T, not string", args[0])
	}
	return append([]byte(s), 0), nil
}

// toRecord wraps a stored object as a RaftStateRecord. It returns nil for
// objects that are not replicated records (the meta row).
func toRecord(obj any) *meshnodev1.RaftStateRecord {
	switch o := obj.(type) {
	case *meshnodev1.NodeRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Node{Node: o}}
	case *meshnodev1.Agent:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Agent{Agent: o}}
	case *meshnodev1.PolicyRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Policy{Policy: o}}
	case *meshnodev1.CARecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_CaRecord{CaRecord: o}}
	case *meshnodev1.UsedTokenRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_UsedToken{UsedToken: o}}
	case *meshnodev1.RevocationRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Revocation{Revocation: o}}
	case *meshnodev1.DecisionRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Decision{Decision: o}}
	case *meshnodev1.DedupRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Dedup{Dedup: o}}
	case *meshnodev1.AdmittedServerRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_AdmittedServer{AdmittedServer: o}}
	case *meshnodev1.TrustBundleRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_TrustBundle{TrustBundle: o}}
	case *meshnodev1.OperatorStateRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Operator{Operator: o}}
	case *meshnodev1.NonceRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_Nonce{Nonce: o}}
	case *meshnodev1.IssuedToken:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_IssuedToken{IssuedToken: o}}
	case *meshnodev1.QuorumPolicyRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_QuorumPolicy{QuorumPolicy: o}}
	case *meshnodev1.AgentNameRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_AgentName{AgentName: o}}
	case *meshnodev1.AuthzPolicyRecord:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_AuthzPolicy{AuthzPolicy: o}}
	case *meshnodev1.AgentKey:
		return &meshnodev1.RaftStateRecord{Record: &meshnodev1.RaftStateRecord_AgentKey{AgentKey: o}}
	}
	return nil
}

// fromRecord returns the table and object a record is stored as, or an
// error for an empty or unknown record (untrusted input from a peer).
func fromRecord(r *meshnodev1.RaftStateRecord) (string, any, error) {
	switch x := r.GetRecord().(type) {
	case *meshnodev1.RaftStateRecord_Node:
		if x.Node.GetName() == "" {
			return "", nil, fmt.Errorf("node record without a name")
		}
		return tableNodes, x.Node, nil
	case *meshnodev1.RaftStateRecord_Agent:
		if x.Agent.GetId() == "" || x.Agent.GetNode() == "" {
			return "", nil, fmt.Errorf("agent record without an id or node")
		}
		return tableAgents, x.Agent, nil
	case *meshnodev1.RaftStateRecord_Policy:
		if x.Policy.GetKey() == "" {
			return "", nil, fmt.Errorf("policy record without a key")
		}
		return tablePolicies, x.Policy, nil
	case *meshnodev1.RaftStateRecord_CaRecord:
		if x.CaRecord.GetKey() == "" {
			return "", nil, fmt.Errorf("CA record without a key")
		}
		return tableCA, x.CaRecord, nil
	case *meshnodev1.RaftStateRecord_UsedToken:
		if x.UsedToken.GetId() == "" {
			return "", nil, fmt.Errorf("token record without an id")
		}
		return tableTokens, x.UsedToken, nil
	case *meshnodev1.RaftStateRecord_Revocation:
		if x.Revocation.GetKey() == "" {
			return "", nil, fmt.Errorf("revocation record without a key")
		}
		return tableRevocations, x.Revocation, nil
	case *meshnodev1.RaftStateRecord_Decision:
		if x.Decision.GetId() == "" || x.Decision.GetStatus() == "" {
			return "", nil, fmt.Errorf("decision record without an id or status")
		}
		return tableDecisions, x.Decision, nil
	case *meshnodev1.RaftStateRecord_Dedup:
		if x.Dedup.GetKey() == "" {
			return "", nil, fmt.Errorf("dedup record without a key")
		}
		return tableDedup, x.Dedup, nil
	case *meshnodev1.RaftStateRecord_AdmittedServer:
		if x.AdmittedServer.GetNode() == "" {
			return "", nil, fmt.Errorf("admitted server record without a node")
		}
		return tableServers, x.AdmittedServer, nil
	case *meshnodev1.RaftStateRecord_TrustBundle:
		if x.TrustBundle.GetKey() != bundleKey {
			return "", nil, fmt.Errorf("trust bundle record with key %q", x.TrustBundle.GetKey())
		}
		return tableBundle, x.TrustBundle, nil
	case *meshnodev1.RaftStateRecord_Operator:
		if x.Operator.GetName() == "" {
			return "", nil, fmt.Errorf("operator record without a name")
		}
		return tableOperators, x.Operator, nil
	case *meshnodev1.RaftStateRecord_Nonce:
		if x.Nonce.GetKey() == "" {
			return "", nil, fmt.Errorf("nonce record without a key")
		}
		return tableNonces, x.Nonce, nil
	case *meshnodev1.RaftStateRecord_IssuedToken:
		if x.IssuedToken.GetId() == "" {
			return "", nil, fmt.Errorf("issued token record without an id")
		}
		return tableIssued, x.IssuedToken, nil
	case *meshnodev1.RaftStateRecord_QuorumPolicy:
		if x.QuorumPolicy.GetPolicy() == nil {
			return "", nil, fmt.Errorf("quorum policy record without a policy")
		}
		return tableQuorumPolicies, x.QuorumPolicy, nil
	case *meshnodev1.RaftStateRecord_AuthzPolicy:
		return tableAuthz, x.AuthzPolicy, nil
	case *meshnodev1.RaftStateRecord_AgentName:
		if x.AgentName.GetId() == "" {
			return "", nil, fmt.Errorf("agent name record without an id")
		}
		return tableAgentNames, x.AgentName, nil
	case *meshnodev1.RaftStateRecord_AgentKey:
		if x.AgentKey.GetAgentId() == "" {
			return "", nil, fmt.Errorf("agent key record without an agent id")
		}
		return tableAgentKeys, x.AgentKey, nil
	}
	return "", nil, fmt.Errorf("empty or unknown state record")
}
