package consensus

import (
	"context"
	"fmt"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Typed writes. Each builds one command, commits it through Apply (from any
// node, retried across leader changes) and returns the log index that
// applied it, with the committed record where the state machine returns one.
// A command the state machine refused is a *RefusedError: callers branch
// with errors.Is on ErrNotFound, ErrTokenUsed or ErrInvalidCommand. A write
// that could not be committed in time wraps ErrNoLeader; a closed store is
// ErrClosed.

// RegisterNode creates or replaces the record of node n.Name.
func (s *Store) RegisterNode(ctx context.Context, n *meshnodev1.NodeRecord) (uint64, error) {
	idx, _, err := s.Apply(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: n}}})
	return idx, err
}

// DeregisterNode removes a node record and every agent of that node;
// ErrNotFound when there was neither.
func (s *Store) DeregisterNode(ctx context.Context, name string) (uint64, error) {
	idx, _, err := s.Apply(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_DeregisterNode{DeregisterNode: &meshnodev1.DeregisterNodeCommand{Name: name}}})
	return idx, err
}

// RegisterAgent creates or replaces agent a.Id and returns the committed
// record: indexes set, and an equivocation flag the agent already carried
// kept (re-registering never clears it).
func (s *Store) RegisterAgent(ctx context.Context, a *meshnodev1.Agent) (*meshnodev1.Agent, uint64, error) {
	return s.agentWrite(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_RegisterAgent{RegisterAgent: &meshnodev1.RegisterAgentCommand{Agent: a}}})
}

// DeregisterAgent removes agent id and returns the record it removed;
// ErrNotFound when there was none.
func (s *Store) DeregisterAgent(ctx context.Context, id string) (*meshnodev1.Agent, uint64, error) {
	return s.agentWrite(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_DeregisterAgent{DeregisterAgent: &meshnodev1.DeregisterAgentCommand{Id: id}}})
}

// SetAgentStatus records agent id's readiness and returns the updated
// record; ErrNotFound when there is no such agent.
func (s *Store) SetAgentStatus(ctx context.Context, id string, st meshnodev1.AgentStatus) (*meshnodev1.Agent, uint64, error) {
	return s.agentWrite(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_SetAgentStatus{SetAgentStatus: &meshnodev1.SetAgentStatusCommand{Id: id, Status: st}}})
}

// FlagAgent marks agent id as having misbehaved (equivocated), for reason,
// and returns the updated record; ErrNotFound when there is no such agent.
// The idempotency key is derived from (id, reason): several nodes reporting
// the same evidence flag the agent once.
func (s *Store) FlagAgent(ctx context.Context, id, reason string, evidence *meshnodev1.EquivocationEvidence) (*meshnodev1.Agent, uint64, error) {
	return s.agentWrite(ctx, &meshnodev1.Command{IdempotencyKey: "flag/" + id + "/" + reason,
		Op: &meshnodev1.Command_FlagAgent{FlagAgent: &meshnodev1.FlagAgentCommand{Id: id, Reason: reason, Evidence: evidence}}})
}

// ClearFlag removes agent id's misbehaviour flag and returns the updated
// record; ErrNotFound when there is no such agent.
func (s *Store) ClearFlag(ctx context.Context, id string) (*meshnodev1.Agent, uint64, error) {
	return s.agentWrite(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_ClearFlag{ClearFlag: &meshnodev1.ClearFlagCommand{Id: id}}})
}

func (s *Store) agentWrite(ctx context.Context, cmd *meshnodev1.Command) (*meshnodev1.Agent, uint64, error) {
	idx, res, err := s.Apply(ctx, cmd)
	if err != nil {
		return nil, idx, err
	}
	return res.GetAgent(), idx, nil
}

// Admin applies an operator-signed admin command (policy, operators). The
// state machine verifies it at apply; a refusal is ErrPermissionDenied
// naming the check that failed.
func (s *Store) Admin(ctx context.Context, a *meshnodev1.AdminCommand) (uint64, error) {
	idx, _, err := s.AdminResult(ctx, a)
	return idx, err
}

// AdminResult is Admin returning the state machine's result too.
func (s *Store) AdminResult(ctx context.Context, a *meshnodev1.AdminCommand) (uint64, *meshnodev1.CommandResult, error) {
	return s.Apply(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: a}})
}

// PutTrustBundle stores the cluster's trust bundle, once.
func (s *Store) PutTrustBundle(ctx context.Context, b *meshnodev1.TrustBundle) (uint64, error) {
	idx, _, err := s.Apply(ctx, &meshnodev1.Command{IdempotencyKey: "trust-bundle", Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: b}}})
	return idx, err
}

// PutDecision records a quorum decision and returns the record that stands:
// rec as committed when the id was new, pending, or an escalated decision
// being reviewed; otherwise the final decision already recorded, unchanged
// (a proposal decides once). Compare the returned status to tell them apart.
func (s *Store) PutDecision(ctx context.Context, rec *meshnodev1.DecisionRecord) (*meshnodev1.DecisionRecord, uint64, error) {
	idx, res, err := s.Apply(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_PutDecision{PutDecision: &meshnodev1.PutDecisionCommand{Decision: rec}}})
	if err != nil {
		return nil, idx, err
	}
	return res.GetDecision(), idx, nil
}

// PutCARecord stores a CA record (servers keep them; clients never see them).
func (s *Store) PutCARecord(ctx context.Context, key string, value []byte) (uint64, error) {
	idx, _, err := s.Apply(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_PutCaRecord{PutCaRecord: &meshnodev1.PutCARecordCommand{
		Record: &meshnodev1.CARecord{Key: key, Value: value},
	}}})
	return idx, err
}

// TokenUse is one use of a join token.
type TokenUse struct {
	// ID is the token's id (its jti).
	ID string
	// Expires is the token's expiry; the state machine judges it by the
	// log entry's time, the one clock every replica shares.
	Expires time.Time
	// Node is the name the joiner claims.
	Node string
	// Server records Node as admitted to join as a Raft server.
	Server bool
	// Rejoin: the token was made for a re-join of exactly Node.
	Rejoin bool
}

// UseToken spends a one-time join token and claims its node name.
// ErrTokenUsed when the token was already spent, including by an earlier
// write of this same use: the idempotency key is derived from the token,
// so a retry is answered with the first result, and only the caller that
// made the first write may treat it as its own. ErrNameTaken when the name
// is registered, an admitted server or revoked (and the token is not a
// re-join of it); ErrTokenExpired when the token expired by the cluster's
// clock.
func (s *Store) UseToken(ctx context.Context, u TokenUse) (uint64, error) {
	var exp uint64 // zero (no expiry) is refused as invalid
	if !u.Expires.IsZero() {
		exp = uint64(max(u.Expires.UnixNano(), 0))
	}
	cmd := &meshnodev1.UseTokenCommand{Id: u.ID, ExpiresUnixNano: exp, Node: u.Node, Rejoin: u.Rejoin}
	if u.Server {
		cmd.ServerNode = u.Node
	}
	idx, res, err := s.Apply(ctx, &meshnodev1.Command{IdempotencyKey: "token/" + u.ID, Op: &meshnodev1.Command_UseToken{UseToken: cmd}})
	if err != nil {
		return idx, err
	}
	if res.GetDuplicate() {
		return idx, &RefusedError{Status: meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED, Index: idx,
			Message: fmt.Sprintf("token %q was already used", u.ID)}
	}
	return idx, nil
}

// Revoke revokes the listed certificate serials of node, or the whole node
// (every certificate, now and later, and its server admission) when serials
// is empty. data is the encoded revocation kept with each record. Revoking
// twice keeps the first revocation.
func (s *Store) Revoke(ctx context.Context, node string, serials []string, reason string, data []byte) (uint64, error) {
	idx, _, err := s.Apply(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_Revoke{Revoke: &meshnodev1.RevokeCommand{
		Node: node, Serials: serials, Reason: reason, Data: data,
	}}})
	return idx, err
}

// AdmitServer records node as admitted to the Raft configuration. The
// first admission, with its token, stands.
func (s *Store) AdmitServer(ctx context.Context, node string) (uint64, error) {
	idx, _, err := s.Apply(ctx, &meshnodev1.Command{Op: &meshnodev1.Command_AdmitServer{AdmitServer: &meshnodev1.AdmitServerCommand{Node: node}}})
	return idx, err
}
