package consensus

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// The admin commands beyond policy, operators, revocation and review: join
// tokens, node and agent removal, and clearing a flag. Like the others they
// run only after applyAdmin verified the operator's signature, and derive
// the change from the signed request alone (the issued token is checked
// against it).

// Join token lifetimes, as the CA applies them (pki.DefaultTokenTTL and
// MaxTokenTTL): part of the replicated protocol, so constants here.
const (
	defaultTokenTTL = time.Hour
	maxTokenTTL     = 7 * 24 * time.Hour
	// issueSkew is how far the minting server's clock may run ahead of
	// the log's when it stamps the token's expiry.
	issueSkew = time.Minute
)

func invalidResult(format string, args ...any) *meshnodev1.CommandResult {
	return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: fmt.Sprintf(format, args...)}
}

// keepsAnAdmin refuses an operator record that would leave the cluster with
// no valid admin: no one could then add an operator, issue a token or
// revoke a node, and the trust bundle cannot be replaced.
func keepsAnAdmin(txn *memdb.Txn, bundle *meshnodev1.TrustBundle, sr *meshnodev1.SignedOperatorRecord, name string, at time.Time) *meshnodev1.CommandResult {
	recs := operatorRecords(txn)
	if len(operator.Admins(bundle, recs, at)) == 0 {
		return nil // nothing to keep (cannot happen once a cluster has a bundle)
	}
	recs[name] = sr
	if len(operator.Admins(bundle, recs, at)) == 0 {
		return denied(fmt.Sprintf("operator %s is the last valid admin: add another admin first (meshnode operator add NAME --role admin), then change or remove %s", name, name))
	}
	return nil
}

// issueToken records a token the executing server minted for a signed
// request. The server chose the id and stamped the expiry; the request
// fixed the rest, so a server cannot widen what the operator asked for.
func issueToken(txn *memdb.Txn, index uint64, at time.Time, sc *meshnodev1.SignedCommand, req *meshnodev1.CreateTokenRequest, tok *meshnodev1.IssuedToken) (*meshnodev1.CommandResult, error) {
	role := req.GetRole()
	if role == meshnodev1.JoinRole_JOIN_ROLE_UNSPECIFIED {
		role = meshnodev1.JoinRole_JOIN_ROLE_CLIENT
	}
	ttl := defaultTokenTTL
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	switch {
	case ttl <= 0 || ttl > maxTokenTTL:
		return invalidResult("token lifetime %s is outside (0, %s]", ttl, maxTokenTTL), nil
	case tok.GetNodeName() != req.GetNodeName(), tok.GetRole() != role, tok.GetRejoin() != req.GetRejoin():
		return denied(fmt.Sprintf("the minted token (name %q, role %v, rejoin %v) differs from the signed request (name %q, role %v, rejoin %v)",
			tok.GetNodeName(), tok.GetRole(), tok.GetRejoin(), req.GetNodeName(), role, req.GetRejoin())), nil
	case tok.GetExpiresAt() == nil || tok.GetExpiresAt().AsTime().After(at.Add(ttl+issueSkew)):
		return denied(fmt.Sprintf("the minted token expires at %s, later than the signed request's %s from the cluster's clock %s",
			tok.GetExpiresAt().AsTime().UTC().Format(time.RFC3339), ttl, at.UTC().Format(time.RFC3339))), nil
	case first[*meshnodev1.IssuedToken](txn, tableIssued, tok.GetId()) != nil:
		return denied(fmt.Sprintf("token id %q is already issued", tok.GetId())), nil
	}
	forgetExpiredTokens(txn, at)
	rec := &meshnodev1.IssuedToken{Id: tok.GetId(), NodeName: tok.GetNodeName(), Role: role, Rejoin: tok.GetRejoin(),
		ExpiresAt: tok.GetExpiresAt(), Operator: sc.GetOperator(), IssuedAt: timestamppb.New(at)}
	return ok(), txn.Insert(tableIssued, rec)
}

// forgetExpiredTokens drops issued tokens past their expiry (plus the skew
// used tokens keep), when a new one is issued: the table stays as small as
// the set of live tokens.
func forgetExpiredTokens(txn *memdb.Txn, at time.Time) {
	it, err := txn.Get(tableIssued, "id")
	if err != nil {
		return
	}
	var stale []any
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if obj.(*meshnodev1.IssuedToken).GetExpiresAt().AsTime().Add(time.Duration(tokenSkewNanos)).Before(at) {
			stale = append(stale, obj)
		}
	}
	for _, obj := range stale {
		_ = txn.Delete(tableIssued, obj)
	}
}

// checkIssued refuses a join with a token no operator issued through the
// log, a revoked one, or one whose recorded terms differ from the use.
func checkIssued(txn *memdb.Txn, u *meshnodev1.UseTokenCommand) *meshnodev1.CommandResult {
	tok := first[*meshnodev1.IssuedToken](txn, tableIssued, u.GetId())
	switch {
	case tok == nil:
		return denied(fmt.Sprintf("token %q was not issued by an operator's signed command on this cluster; create one with meshnode token create", u.GetId()))
	case tok.GetRevokedAt() != nil:
		return denied(fmt.Sprintf("token %q was revoked by %s at %s: %s", u.GetId(), tok.GetRevokedBy(), tok.GetRevokedAt().AsTime().UTC().Format(time.RFC3339), tok.GetRevokeReason()))
	case tok.GetUsedBy() != "":
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED, Message: fmt.Sprintf("token %q was already used by %s", u.GetId(), tok.GetUsedBy())}
	case tok.GetNodeName() != "" && tok.GetNodeName() != u.GetNode():
		return denied(fmt.Sprintf("token %q is bound to node %q, not %q", u.GetId(), tok.GetNodeName(), u.GetNode()))
	case u.GetServerNode() != "" && tok.GetRole() != meshnodev1.JoinRole_JOIN_ROLE_SERVER:
		return denied(fmt.Sprintf("token %q admits a client, not a server", u.GetId()))
	case u.GetRejoin() && !tok.GetRejoin():
		return denied(fmt.Sprintf("token %q is not a re-join token", u.GetId()))
	}
	return nil
}

// markIssuedUsed records which node used an issued token.
func markIssuedUsed(txn *memdb.Txn, u *meshnodev1.UseTokenCommand) error {
	tok := first[*meshnodev1.IssuedToken](txn, tableIssued, u.GetId())
	if tok == nil {
		return nil
	}
	used := proto.CloneOf(tok)
	used.UsedBy = u.GetNode()
	if used.UsedBy == "" {
		used.UsedBy = "(unnamed)"
	}
	return txn.Insert(tableIssued, used)
}

func revokeToken(txn *memdb.Txn, at time.Time, sc *meshnodev1.SignedCommand, req *meshnodev1.RevokeTokenRequest) (*meshnodev1.CommandResult, error) {
	tok := first[*meshnodev1.IssuedToken](txn, tableIssued, req.GetId())
	if tok == nil {
		return notFound("token", req.GetId()), nil
	}
	if tok.GetRevokedAt() != nil {
		return ok(), nil // revoking twice keeps the first revocation
	}
	r := proto.CloneOf(tok)
	r.RevokedAt, r.RevokedBy, r.RevokeReason = timestamppb.New(at), sc.GetOperator(), req.GetReason()
	return ok(), txn.Insert(tableIssued, r)
}

// removeNode forgets a node and its agents. A Raft server is refused: the
// configuration, not this record, is what makes it a member, and autopilot
// removes a dead server from it.
func removeNode(txn *memdb.Txn, index uint64, name string) (*meshnodev1.CommandResult, error) {
	if first[*meshnodev1.AdmittedServerRecord](txn, tableServers, name) != nil {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_FAILED_PRECONDITION,
			Message: fmt.Sprintf("node %s is a Raft server: stop it and let autopilot remove it from the configuration (or revoke it), then remove it", name)}, nil
	}
	if err := retireNodeKeys(txn, index, name, true); err != nil {
		return nil, err
	}
	n, err := txn.DeleteAll(tableAgents, "node", name)
	if err != nil {
		return nil, err
	}
	rec := first[*meshnodev1.NodeRecord](txn, tableNodes, name)
	if rec == nil && n == 0 {
		return notFound("node", name), nil
	}
	if rec != nil {
		if err := txn.Delete(tableNodes, rec); err != nil {
			return nil, err
		}
	}
	return &meshnodev1.CommandResult{Status: statusOK, AgentsRemoved: uint32(n)}, nil
}

// removeAgent removes an agent's record and frees its name (an operator's
// command: the only way a name changes owner); its keys stay in history.
func removeAgent(txn *memdb.Txn, index uint64, id string) (*meshnodev1.CommandResult, error) {
	a := first[*meshnodev1.Agent](txn, tableAgents, id)
	named := first[*meshnodev1.AgentNameRecord](txn, tableAgentNames, id)
	if a == nil && named == nil {
		return notFound("agent", id), nil
	}
	if err := retireKey(txn, index, id); err != nil {
		return nil, err
	}
	if err := freeName(txn, id); err != nil {
		return nil, err
	}
	if a == nil {
		return ok(), nil
	}
	return &meshnodev1.CommandResult{Status: statusOK, Agent: a}, txn.Delete(tableAgents, a)
}

// retireNodeKeys ends the current keys of node's agents at index (and,
// when free, releases their names).
func retireNodeKeys(txn *memdb.Txn, index uint64, node string, free bool) error {
	it, err := txn.Get(tableAgents, "node", node)
	if err != nil {
		return err
	}
	var ids []string
	for obj := it.Next(); obj != nil; obj = it.Next() {
		ids = append(ids, obj.(*meshnodev1.Agent).GetId())
	}
	for _, id := range ids {
		if err := retireKey(txn, index, id); err != nil {
			return err
		}
		if free {
			if err := freeName(txn, id); err != nil {
				return err
			}
		}
	}
	return nil
}

func applyClearFlag(txn *memdb.Txn, index uint64, req *meshnodev1.ClearFlagRequest) (*meshnodev1.CommandResult, error) {
	if strings.TrimSpace(req.GetReason()) == "" {
		return invalidResult("clear_flag.reason is required: say why the agent's votes may count again"), nil
	}
	a := first[*meshnodev1.Agent](txn, tableAgents, req.GetAgentId())
	if a == nil {
		return notFound("agent", req.GetAgentId()), nil
	}
	if !a.GetFlagged() {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_FAILED_PRECONDITION,
			Message: fmt.Sprintf("agent %s is not flagged", req.GetAgentId())}, nil
	}
	return updateAgent(txn, index, req.GetAgentId(), func(a *meshnodev1.Agent) { a.Flagged, a.FlaggedReason = false, "" })
}

// IssuedTokens lists the join tokens operators issued that are still
// recorded, newest first.
func (s *Store) IssuedTokens(ctx context.Context, opts ReadOptions) ([]*meshnodev1.IssuedToken, uint64, error) {
	toks, idx, err := list[*meshnodev1.IssuedToken](s, ctx, opts, tableIssued, "id", nil)
	slices.SortFunc(toks, func(a, b *meshnodev1.IssuedToken) int {
		return b.GetIssuedAt().AsTime().Compare(a.GetIssuedAt().AsTime())
	})
	return toks, idx, err
}
