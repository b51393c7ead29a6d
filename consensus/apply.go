package consensus

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Dedup window. Part of the replicated protocol: every replica must use the
// same values, so they are constants, not configuration.
const (
	dedupTTLNanos = uint64(10 * 60 * 1e9) // a retried write is recognised for 10 minutes
	dedupMax      = 100_000               // and at most this many keys are remembered
)

// applyBatch applies one committed log entry. It never panics on bad input
// and depends only on (index, batch) and the prior state, so every replica
// reaches the same state and results.
func (s *state) applyBatch(index uint64, b *meshnodev1.CommandBatch) []*meshnodev1.CommandResult {
	results := make([]*meshnodev1.CommandResult, len(b.GetCommands()))
	s.transact(index, func(txn *memdb.Txn, _ uint64) {
		now := uint64(max(b.GetTimeUnixNano(), 0))
		s.expire(txn, now)
		for i, c := range b.GetCommands() {
			results[i] = s.applyCommand(txn, index, now, c)
			if !results[i].GetDuplicate() {
				// A duplicate keeps the index where the write took effect.
				results[i].Index = index
			}
		}
	})
	return results
}

// transact runs change in one write transaction that records index as
// applied and publishes the changes to watches and replicas.
func (s *state) transact(index uint64, change func(txn *memdb.Txn, index uint64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Load().Txn(true)
	txn.TrackChanges()
	change(txn, index)
	if err := txn.Insert(tableMeta, &metaRow{Key: metaApplied, Index: index}); err != nil {
		panic(fmt.Sprintf("consensus: recording applied index %d: %v", index, err)) // schema bug
	}
	ev := eventFrom(index, txn.Changes())
	txn.Commit()
	s.applied.Store(index)
	s.log.append(ev)
}

// applyEmpty records that a log entry which changes nothing (a refused
// batch) was applied, keeping the index and the event chain moving.
func (s *state) applyEmpty(index uint64) {
	s.applyBatch(index, &meshnodev1.CommandBatch{Version: CommandVersion})
}

// expire forgets used tokens and dedup keys whose time has passed, and the
// oldest dedup keys beyond dedupMax.
func (s *state) expire(txn *memdb.Txn, now uint64) {
	if now == 0 {
		return
	}
	s.dedup.expire(now, dedupMax)
	expireNonces(txn, now)
	var stale []any
	it, err := txn.Get(tableTokens, "expiry")
	if err != nil {
		return
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if obj.(*meshnodev1.UsedTokenRecord).GetExpiresUnixNano() >= now {
			break
		}
		stale = append(stale, obj)
	}
	for _, obj := range stale {
		_ = txn.Delete(tableTokens, obj)
	}
}

func (s *state) applyCommand(txn *memdb.Txn, index, now uint64, c *meshnodev1.Command) *meshnodev1.CommandResult {
	if err := ValidateCommand(c); err != nil {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: err.Error()}
	}
	if refusal := authorizeOrigin(txn, c); refusal != nil {
		return refusal
	}
	key := c.GetIdempotencyKey()
	if key != "" {
		key = dedupKey(c.GetOrigin(), key)
	}
	if key != "" {
		if rec := s.dedup.get(key); rec != nil {
			res := proto.CloneOf(rec.GetResult())
			res.Duplicate = true
			return res
		}
	}
	if refusal := s.clientQuota(txn, c); refusal != nil {
		return refusal
	}
	res, err := applyOp(txn, index, now, c)
	if err != nil {
		// Only a schema bug gets here (validation guarantees the indexed
		// fields); report it as invalid, identically on every replica.
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: err.Error()}
	}
	if key != "" && now != 0 {
		// The result is shared, not copied: results are never mutated after
		// this point (callers get clones or the marshalled form).
		res.Index = index
		s.dedup.add(&meshnodev1.DedupRecord{Key: key, Result: res, ExpiresUnixNano: now + dedupTTLNanos})
	}
	return res
}

var (
	statusOK       = meshnodev1.CommandStatus_COMMAND_STATUS_OK
	statusNotFound = meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND
)

func ok() *meshnodev1.CommandResult { return &meshnodev1.CommandResult{Status: statusOK} }

func notFound(what, id string) *meshnodev1.CommandResult {
	return &meshnodev1.CommandResult{Status: statusNotFound, Message: fmt.Sprintf("%s %q not found", what, id)}
}

func first[T any](txn *memdb.Txn, table, id string) T {
	var zero T
	raw, err := txn.First(table, "id", id)
	if err != nil || raw == nil {
		return zero
	}
	return raw.(T)
}

func applyOp(txn *memdb.Txn, index, now uint64, c *meshnodev1.Command) (*meshnodev1.CommandResult, error) {
	switch op := c.GetOp().(type) {
	case *meshnodev1.Command_RegisterNode:
		n := proto.Clone(op.RegisterNode.GetNode()).(*meshnodev1.NodeRecord)
		n.ModifyIndex = index
		return ok(), txn.Insert(tableNodes, n)
	case *meshnodev1.Command_DeregisterNode:
		return deregisterNode(txn, index, op.DeregisterNode.GetName())
	case *meshnodev1.Command_RegisterAgent:
		return registerAgent(txn, index, op.RegisterAgent.GetAgent())
	case *meshnodev1.Command_DeregisterAgent:
		a := first[*meshnodev1.Agent](txn, tableAgents, op.DeregisterAgent.GetId())
		if a == nil {
			return notFound("agent", op.DeregisterAgent.GetId()), nil
		}
		if err := retireKey(txn, index, a.GetId()); err != nil {
			return nil, err
		}
		return &meshnodev1.CommandResult{Status: statusOK, Agent: a}, txn.Delete(tableAgents, a)
	case *meshnodev1.Command_SetAgentStatus:
		return updateAgent(txn, index, op.SetAgentStatus.GetId(), func(a *meshnodev1.Agent) { a.Status = op.SetAgentStatus.GetStatus() })
	case *meshnodev1.Command_FlagAgent:
		return updateAgent(txn, index, op.FlagAgent.GetId(), func(a *meshnodev1.Agent) {
			a.Flagged, a.FlaggedReason = true, op.FlagAgent.GetReason()
		})
	case *meshnodev1.Command_ClearFlag:
		return updateAgent(txn, index, op.ClearFlag.GetId(), func(a *meshnodev1.Agent) { a.Flagged, a.FlaggedReason = false, "" })
	case *meshnodev1.Command_PutPolicy:
		p := proto.Clone(op.PutPolicy.GetPolicy()).(*meshnodev1.PolicyRecord)
		p.CreateIndex, p.ModifyIndex = index, index
		if old := first[*meshnodev1.PolicyRecord](txn, tablePolicies, p.GetKey()); old != nil {
			p.CreateIndex = old.GetCreateIndex()
		}
		return ok(), txn.Insert(tablePolicies, p)
	case *meshnodev1.Command_DeletePolicy:
		p := first[*meshnodev1.PolicyRecord](txn, tablePolicies, op.DeletePolicy.GetKey())
		if p == nil {
			return notFound("policy", op.DeletePolicy.GetKey()), nil
		}
		return ok(), txn.Delete(tablePolicies, p)
	case *meshnodev1.Command_PutCaRecord:
		r := proto.Clone(op.PutCaRecord.GetRecord()).(*meshnodev1.CARecord)
		r.ModifyIndex = index
		return ok(), txn.Insert(tableCA, r)
	case *meshnodev1.Command_UseToken:
		return useToken(txn, index, now, op.UseToken)
	case *meshnodev1.Command_Revoke:
		return revoke(txn, index, op.Revoke)
	case *meshnodev1.Command_PutDecision:
		return putDecision(txn, index, op.PutDecision.GetDecision())
	case *meshnodev1.Command_PutTrustBundle:
		return putTrustBundle(txn, index, op.PutTrustBundle.GetBundle())
	case *meshnodev1.Command_Admin:
		return applyAdmin(txn, index, now, op.Admin)
	case *meshnodev1.Command_AdmitServer:
		name := op.AdmitServer.GetNode()
		if first[*meshnodev1.AdmittedServerRecord](txn, tableServers, name) != nil {
			return ok(), nil // the first admission, with its token, stands
		}
		return ok(), txn.Insert(tableServers, &meshnodev1.AdmittedServerRecord{Node: name, CreateIndex: index})
	}
	return nil, errors.New("unhandled operation") // ValidateCommand refuses these first
}

// tokenSkewNanos is how long a used token's id outlives its expiry. The
// state machine refuses a use after expiry by the log's clock, and a CA
// checks expiry by its own before that; keeping the id this much longer
// closes the replay window a CA whose clock runs behind would open.
const tokenSkewNanos = uint64(5 * 60 * 1e9)

// useToken spends a token once and claims its node name once.
func useToken(txn *memdb.Txn, index, now uint64, u *meshnodev1.UseTokenCommand) (*meshnodev1.CommandResult, error) {
	if first[*meshnodev1.UsedTokenRecord](txn, tableTokens, u.GetId()) != nil {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED,
			Message: fmt.Sprintf("token %q was already used", u.GetId())}, nil
	}
	if now != 0 && u.GetExpiresUnixNano() < now {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_EXPIRED,
			Message: fmt.Sprintf("token %q expired %s before the cluster's clock reached this join", u.GetId(), time.Duration(now-u.GetExpiresUnixNano()))}, nil
	}
	if refusal := checkIssued(txn, u); refusal != nil {
		return refusal, nil
	}
	if why := nameClaimed(txn, u.GetNode(), u.GetRejoin()); why != "" {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_NAME_TAKEN,
			Message: fmt.Sprintf("node name %q %s; join under another name, or have an operator create a re-join token for it (meshnode token create --name %s --rejoin)", u.GetNode(), why, u.GetNode())}, nil
	}
	if err := txn.Insert(tableTokens, &meshnodev1.UsedTokenRecord{
		Id: u.GetId(), ExpiresUnixNano: u.GetExpiresUnixNano() + tokenSkewNanos, CreateIndex: index}); err != nil {
		return nil, err
	}
	if err := markIssuedUsed(txn, u); err != nil {
		return nil, err
	}
	if name := u.GetServerNode(); name != "" {
		return ok(), txn.Insert(tableServers, &meshnodev1.AdmittedServerRecord{Node: name, TokenId: u.GetId(), CreateIndex: index})
	}
	return ok(), nil
}

// nameClaimed says why name may not be claimed by a join, or "".
func nameClaimed(txn *memdb.Txn, name string, rejoin bool) string {
	switch {
	case name == "":
		return ""
	case first[*meshnodev1.RevocationRecord](txn, tableRevocations, nodeRevocationKey(name)) != nil:
		return "is revoked and can never join again"
	case rejoin:
		return ""
	case first[*meshnodev1.AdmittedServerRecord](txn, tableServers, name) != nil:
		return "belongs to a server of this cluster"
	case first[*meshnodev1.NodeRecord](txn, tableNodes, name) != nil:
		return "is registered to a node of this cluster"
	}
	return ""
}

func deregisterNode(txn *memdb.Txn, index uint64, name string) (*meshnodev1.CommandResult, error) {
	n := first[*meshnodev1.NodeRecord](txn, tableNodes, name)
	if err := retireNodeKeys(txn, index, name, false); err != nil {
		return nil, err
	}
	deleted, err := txn.DeleteAll(tableAgents, "node", name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		if deleted == 0 {
			return notFound("node", name), nil
		}
		return ok(), nil
	}
	return ok(), txn.Delete(tableNodes, n)
}

func registerAgent(txn *memdb.Txn, index uint64, in *meshnodev1.Agent) (*meshnodev1.CommandResult, error) {
	if refusal, err := claimIdentity(txn, index, in); refusal != nil || err != nil {
		return refusal, err
	}
	if refusal := checkServeRules(txn, in); refusal != nil {
		return refusal, nil
	}
	a := proto.Clone(in).(*meshnodev1.Agent)
	a.CreateIndex, a.ModifyIndex = index, index
	if old := first[*meshnodev1.Agent](txn, tableAgents, a.GetId()); old != nil {
		a.CreateIndex = old.GetCreateIndex()
		// A flag is evidence of misbehaviour: re-registering must not clear it.
		if old.GetFlagged() {
			a.Flagged, a.FlaggedReason = true, old.GetFlaggedReason()
		}
	}
	return &meshnodev1.CommandResult{Status: statusOK, Agent: a}, txn.Insert(tableAgents, a)
}

func updateAgent(txn *memdb.Txn, index uint64, id string, change func(*meshnodev1.Agent)) (*meshnodev1.CommandResult, error) {
	old := first[*meshnodev1.Agent](txn, tableAgents, id)
	if old == nil {
		return notFound("agent", id), nil
	}
	a := proto.Clone(old).(*meshnodev1.Agent)
	change(a)
	a.ModifyIndex = index
	return &meshnodev1.CommandResult{Status: statusOK, Agent: a}, txn.Insert(tableAgents, a)
}

func revoke(txn *memdb.Txn, index uint64, r *meshnodev1.RevokeCommand) (*meshnodev1.CommandResult, error) {
	recs := []*meshnodev1.RevocationRecord{}
	if len(r.GetSerials()) == 0 {
		recs = append(recs, &meshnodev1.RevocationRecord{Key: nodeRevocationKey(r.GetNode()), Node: r.GetNode()})
		if err := markAgentsRevoked(txn, index, r.GetNode()); err != nil {
			return nil, err
		}
		// A revoked node can never come back under its name, as a server
		// or otherwise.
		if a := first[*meshnodev1.AdmittedServerRecord](txn, tableServers, r.GetNode()); a != nil {
			if err := txn.Delete(tableServers, a); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range r.GetSerials() {
		recs = append(recs, &meshnodev1.RevocationRecord{Key: serialRevocationKey(s), Node: r.GetNode(), Serial: s})
	}
	for _, rec := range recs {
		rec.Reason, rec.Data, rec.CreateIndex = r.GetReason(), r.GetData(), index
		// Revoking twice keeps the first revocation's index.
		if old := first[*meshnodev1.RevocationRecord](txn, tableRevocations, rec.GetKey()); old != nil {
			continue
		}
		if err := txn.Insert(tableRevocations, rec); err != nil {
			return nil, err
		}
	}
	return ok(), nil
}

// markAgentsRevoked takes a revoked node's agents out of rotation for good:
// they stay in the registry for history, with a status no write can change.
func markAgentsRevoked(txn *memdb.Txn, index uint64, node string) error {
	it, err := txn.Get(tableAgents, "node", node)
	if err != nil {
		return err
	}
	var agents []*meshnodev1.Agent
	for obj := it.Next(); obj != nil; obj = it.Next() {
		agents = append(agents, obj.(*meshnodev1.Agent))
	}
	for _, old := range agents {
		a := proto.CloneOf(old)
		a.Status, a.ModifyIndex = meshnodev1.AgentStatus_AGENT_STATUS_REVOKED, index
		if err := txn.Insert(tableAgents, a); err != nil {
			return err
		}
	}
	return nil
}

func nodeRevocationKey(node string) string     { return "node/" + node }
func serialRevocationKey(serial string) string { return "serial/" + serial }

// DecisionNeedsReview and DecisionReviewed: an escalated decision may be
// replaced once, by the operator's review; every other final status is final.
const (
	DecisionNeedsReview = "needs_review"
	DecisionReviewed    = "reviewed"
)

// DecisionPending is a decision status that a later PutDecision may
// overwrite; every other status is final.
const DecisionPending = "pending"

func putDecision(txn *memdb.Txn, index uint64, in *meshnodev1.DecisionRecord) (*meshnodev1.CommandResult, error) {
	if old := first[*meshnodev1.DecisionRecord](txn, tableDecisions, in.GetId()); old == nil || old.GetStatus() == DecisionPending {
		if refusal := checkDecided(txn, in); refusal != nil {
			return refusal, nil
		}
	}
	d := proto.Clone(in).(*meshnodev1.DecisionRecord)
	d.CreateIndex, d.ModifyIndex = index, index
	if old := first[*meshnodev1.DecisionRecord](txn, tableDecisions, d.GetId()); old != nil {
		review := old.GetStatus() == DecisionNeedsReview && d.GetStatus() == DecisionReviewed
		if old.GetStatus() != DecisionPending && !review {
			return &meshnodev1.CommandResult{Status: statusOK, Decision: old, DecisionExisted: true}, nil
		}
		d.CreateIndex = old.GetCreateIndex()
	}
	return &meshnodev1.CommandResult{Status: statusOK, Decision: d}, txn.Insert(tableDecisions, d)
}
