package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/operator"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	quorumrules "github.com/agentmesh/meshnode/quorum"
)

// Admin commands are judged here, at apply, by every replica: the
// signature against the operator records in the state (back to the first
// admin's key in the trust bundle, which the online CA cannot forge), the
// cluster id, the method, the request's digest, the validity window by the
// log entry's time, the role, and the nonce. Only then is the change
// derived from the signed request itself, so a node that relays the
// command can neither alter it nor replay it.

// bundleKey is the trust bundle record's key.
const bundleKey = "bundle"

// Admin methods and the role each needs. The request's oneof field in
// AdminCommand must match the method.
const (
	MethodSetPolicy       = "/meshnode.v1.PolicyService/SetPolicy"
	MethodDeletePolicy    = "/meshnode.v1.PolicyService/DeletePolicy"
	MethodPutOperator     = "/meshnode.v1.OperatorService/PutOperator"
	MethodRevokeNode      = "/meshnode.v1.PKIService/RevokeNode"
	MethodReview          = operator.MethodReview
	MethodClearFlag       = "/meshnode.v1.QuorumService/ClearFlag"
	MethodRevokeToken     = "/meshnode.v1.PKIService/RevokeToken"
	MethodRemoveNode      = "/meshnode.v1.PKIService/RemoveNode"
	MethodRemoveAgent     = "/meshnode.v1.RegistryService/RemoveAgent"
	MethodSetQuorumPolicy = operator.MethodSetQuorumPolicy
	MethodSetAuthzPolicy  = "/meshnode.v1.AuthzService/SetAuthzPolicy"
	// MethodCreateToken is recorded in the log with the token the executing
	// server minted (AdminCommand.issued_token): the nonce is then spent
	// cluster-wide, and the token can be listed, revoked, and refused at
	// join when no operator issued it.
	MethodCreateToken = "/meshnode.v1.PKIService/CreateToken"
)

// AdminMethods lists every admin method; clients sign exactly these.
var AdminMethods = []string{
	MethodSetPolicy, MethodDeletePolicy, MethodPutOperator, MethodRevokeNode, MethodReview,
	MethodClearFlag, MethodRevokeToken, MethodRemoveNode, MethodRemoveAgent, MethodCreateToken,
	MethodSetQuorumPolicy, MethodSetAuthzPolicy,
}

// AdminRequest returns the signed request an admin command carries and the
// role its method needs, or an error when they do not match.
func AdminRequest(a *meshnodev1.AdminCommand) (proto.Message, operator.Role, error) {
	var req proto.Message
	var need operator.Role
	switch r := a.GetRequest().(type) {
	case *meshnodev1.AdminCommand_SetPolicy:
		req, need = r.SetPolicy, operator.RolePolicy
		if a.GetMethod() == MethodSetPolicy && r.SetPolicy.GetPolicy() != nil {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_DeletePolicy:
		req, need = r.DeletePolicy, operator.RolePolicy
		if a.GetMethod() == MethodDeletePolicy {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_PutOperator:
		req, need = r.PutOperator, operator.RoleAdmin
		if a.GetMethod() == MethodPutOperator && r.PutOperator.GetRecord() != nil {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_RevokeNode:
		req, need = r.RevokeNode, operator.RoleAdmin
		if a.GetMethod() == MethodRevokeNode && (r.RevokeNode.GetNodeName() != "" || len(r.RevokeNode.GetSerials()) > 0) {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_Review:
		req, need = r.Review, operator.RoleReviewer
		if a.GetMethod() == MethodReview && r.Review.GetId() != "" {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_ClearFlag:
		req, need = r.ClearFlag, operator.RoleReviewer
		if a.GetMethod() == MethodClearFlag && r.ClearFlag.GetAgentId() != "" {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_CreateToken:
		req, need = r.CreateToken, operator.RoleAdmin
		if a.GetMethod() == MethodCreateToken && a.GetIssuedToken().GetId() != "" {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_RevokeToken:
		req, need = r.RevokeToken, operator.RoleAdmin
		if a.GetMethod() == MethodRevokeToken && r.RevokeToken.GetId() != "" {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_RemoveNode:
		req, need = r.RemoveNode, operator.RoleAdmin
		if a.GetMethod() == MethodRemoveNode && r.RemoveNode.GetNodeName() != "" {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_RemoveAgent:
		req, need = r.RemoveAgent, operator.RoleAdmin
		if a.GetMethod() == MethodRemoveAgent && r.RemoveAgent.GetId() != "" {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_SetQuorumPolicy:
		req, need = r.SetQuorumPolicy, operator.RolePolicy
		if a.GetMethod() == MethodSetQuorumPolicy && r.SetQuorumPolicy.GetPolicy() != nil {
			return req, need, nil
		}
	case *meshnodev1.AdminCommand_SetAuthzPolicy:
		req, need = r.SetAuthzPolicy, operator.RolePolicy
		if a.GetMethod() == MethodSetAuthzPolicy && r.SetAuthzPolicy.GetPolicy() != nil {
			return req, need, nil
		}
	}
	return nil, "", invalid("admin command for %q carries a %T request", a.GetMethod(), a.GetRequest())
}

// ClusterID is what admin commands (and, hex-encoded, votes) are signed
// for: operator.ClusterID.
func ClusterID(b *meshnodev1.TrustBundle) []byte { return operator.ClusterID(b) }

// PolicyKey is the policy record a capability's policy is stored under.
func PolicyKey(capability string) string {
	if capability == "" {
		return "*"
	}
	return capability
}

func operatorRecords(txn *memdb.Txn) operator.Records {
	recs := operator.Records{}
	it, err := txn.Get(tableOperators, "id")
	if err != nil {
		return recs
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		o := obj.(*meshnodev1.OperatorStateRecord)
		recs[o.GetName()] = o.GetSigned()
	}
	return recs
}

// VerifyAdmin checks an admin command against a state: everything but the
// nonce. Handlers call it to refuse early; the state machine calls it at
// apply.
func verifyAdmin(txn *memdb.Txn, a *meshnodev1.AdminCommand, at time.Time) error {
	b := first[*meshnodev1.TrustBundleRecord](txn, tableBundle, bundleKey)
	if b == nil {
		return fmt.Errorf("this cluster has no trust bundle, so no operator can be verified; it is written when the first server bootstraps")
	}
	req, need, err := AdminRequest(a)
	if err != nil {
		return err
	}
	recs := operatorRecords(txn)
	lookup := func(name string) (*meshnodev1.OperatorRecord, error) {
		return operator.VerifyChain(b.GetBundle(), recs, name, at)
	}
	return operator.VerifyCommand(a.GetSignature(), ClusterID(b.GetBundle()), a.GetMethod(), req, at, lookup, need)
}

func applyAdmin(txn *memdb.Txn, index, now uint64, a *meshnodev1.AdminCommand) (*meshnodev1.CommandResult, error) {
	at := time.Unix(0, int64(now))
	if err := verifyAdmin(txn, a, at); err != nil {
		return denied(err.Error()), nil
	}
	sc := a.GetSignature()
	key := operator.NonceKey(sc)
	if first[*meshnodev1.NonceRecord](txn, tableNonces, key) != nil {
		return denied(fmt.Sprintf("%s: this signed command was already applied (nonce seen); sign it again to repeat it", a.GetMethod())), nil
	}
	if err := txn.Insert(tableNonces, &meshnodev1.NonceRecord{Key: key, ExpiresUnixNano: uint64(max(operator.Expiry(sc).UnixNano(), 0))}); err != nil {
		return nil, err
	}
	switch r := a.GetRequest().(type) {
	case *meshnodev1.AdminCommand_SetPolicy:
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.SetPolicy.GetPolicy())
		if err != nil {
			return denied(fmt.Sprintf("encoding the policy: %v", err)), nil
		}
		p := &meshnodev1.PolicyRecord{Key: PolicyKey(r.SetPolicy.GetPolicy().GetCapability()), Policy: b, CreateIndex: index, ModifyIndex: index}
		if old := first[*meshnodev1.PolicyRecord](txn, tablePolicies, p.GetKey()); old != nil {
			p.CreateIndex = old.GetCreateIndex()
		}
		return ok(), txn.Insert(tablePolicies, p)
	case *meshnodev1.AdminCommand_DeletePolicy:
		key := PolicyKey(r.DeletePolicy.GetCapability())
		p := first[*meshnodev1.PolicyRecord](txn, tablePolicies, key)
		if p == nil {
			return notFound("policy", key), nil
		}
		return ok(), txn.Delete(tablePolicies, p)
	case *meshnodev1.AdminCommand_PutOperator:
		b := first[*meshnodev1.TrustBundleRecord](txn, tableBundle, bundleKey)
		rec, err := operator.VerifyUpdate(b.GetBundle(), operatorRecords(txn), r.PutOperator.GetRecord(), at)
		if err != nil {
			return denied(err.Error()), nil
		}
		if refusal := keepsAnAdmin(txn, b.GetBundle(), r.PutOperator.GetRecord(), rec.GetName(), at); refusal != nil {
			return refusal, nil
		}
		return ok(), txn.Insert(tableOperators, &meshnodev1.OperatorStateRecord{Name: rec.GetName(), Signed: r.PutOperator.GetRecord(), ModifyIndex: index})
	case *meshnodev1.AdminCommand_RevokeNode:
		rr := r.RevokeNode
		rev := &meshnodev1.RevokeCommand{Node: rr.GetNodeName(), Serials: rr.GetSerials(), Reason: rr.GetReason()}
		if err := ValidateCommand(&meshnodev1.Command{Version: CommandVersion, Op: &meshnodev1.Command_Revoke{Revoke: rev}}); err != nil {
			return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: err.Error()}, nil
		}
		// What readers (the CA, the revoked node) see: who revoked, when by
		// the cluster's clock, and why.
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(&meshnodev1.Revocation{NodeName: rr.GetNodeName(), Serials: rr.GetSerials(),
			Reason: rr.GetReason(), RevokedAt: timestamppb.New(at), Operator: sc.GetOperator()})
		if err != nil {
			return nil, err
		}
		rev.Data = data
		return revoke(txn, index, rev)
	case *meshnodev1.AdminCommand_Review:
		return applyReview(txn, index, at, sc, r.Review)
	case *meshnodev1.AdminCommand_ClearFlag:
		return applyClearFlag(txn, index, r.ClearFlag)
	case *meshnodev1.AdminCommand_CreateToken:
		return issueToken(txn, index, at, sc, r.CreateToken, a.GetIssuedToken())
	case *meshnodev1.AdminCommand_RevokeToken:
		return revokeToken(txn, at, sc, r.RevokeToken)
	case *meshnodev1.AdminCommand_RemoveNode:
		return removeNode(txn, index, r.RemoveNode.GetNodeName())
	case *meshnodev1.AdminCommand_RemoveAgent:
		return removeAgent(txn, index, r.RemoveAgent.GetId())
	case *meshnodev1.AdminCommand_SetQuorumPolicy:
		return setQuorumPolicy(txn, index, sc, r.SetQuorumPolicy)
	case *meshnodev1.AdminCommand_SetAuthzPolicy:
		return setAuthzPolicy(txn, index, sc, r.SetAuthzPolicy)
	}
	return nil, fmt.Errorf("unhandled admin request %T", a.GetRequest())
}

// putTrustBundle stores the bundle once; a second, different one is
// refused, whoever sends it.
func putTrustBundle(txn *memdb.Txn, index uint64, b *meshnodev1.TrustBundle) (*meshnodev1.CommandResult, error) {
	if err := operator.ValidateBundle(b); err != nil {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: err.Error()}, nil
	}
	if old := first[*meshnodev1.TrustBundleRecord](txn, tableBundle, bundleKey); old != nil {
		if proto.Equal(old.GetBundle(), b) {
			return ok(), nil
		}
		return denied("the trust bundle is written once, when the cluster bootstraps; it is not replaced"), nil
	}
	return ok(), txn.Insert(tableBundle, &meshnodev1.TrustBundleRecord{Key: bundleKey, Bundle: b, CreateIndex: index})
}

// expireNonces forgets nonces of commands that have expired.
func expireNonces(txn *memdb.Txn, now uint64) {
	var stale []any
	it, err := txn.Get(tableNonces, "expiry")
	if err != nil {
		return
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if obj.(*meshnodev1.NonceRecord).GetExpiresUnixNano() >= now {
			break
		}
		stale = append(stale, obj)
	}
	for _, obj := range stale {
		_ = txn.Delete(tableNonces, obj)
	}
}

// TrustBundle returns the cluster's trust bundle, or ErrNotFound before the
// bootstrapping server wrote it.
func (s *Store) TrustBundle(ctx context.Context, opts ReadOptions) (*meshnodev1.TrustBundle, uint64, error) {
	r, idx, err := getOne[*meshnodev1.TrustBundleRecord](s, ctx, opts, tableBundle, "trust bundle", bundleKey)
	if err != nil {
		return nil, idx, err
	}
	return r.GetBundle(), idx, nil
}

// Operators lists the operators' records, by name.
func (s *Store) Operators(ctx context.Context, opts ReadOptions) ([]*meshnodev1.OperatorStateRecord, uint64, error) {
	return list[*meshnodev1.OperatorStateRecord](s, ctx, opts, tableOperators, "id", nil)
}

// VerifyAdmin checks an admin command against the local state, as the state
// machine will at apply (but for the nonce): for methods that write no Raft
// state (minting a join token), and to refuse early.
func (s *Store) VerifyAdmin(a *meshnodev1.AdminCommand, at time.Time) error {
	txn, _ := s.st.read()
	if err := verifyAdmin(txn, a, at); err != nil {
		return fmt.Errorf("%w: %v", ErrPermissionDenied, err)
	}
	return nil
}

// applyReview records an operator's review of an escalated decision: the
// reviewer is the verified signer, the time the log's, and the signed
// command is kept with the review so anyone with the trust bundle can check
// it. Only a decision that needs review is reviewed, once.
func applyReview(txn *memdb.Txn, index uint64, at time.Time, sc *meshnodev1.SignedCommand, req *meshnodev1.ReviewRequest) (*meshnodev1.CommandResult, error) {
	old := first[*meshnodev1.DecisionRecord](txn, tableDecisions, req.GetId())
	if old == nil {
		return notFound("decision", req.GetId()), nil
	}
	d := &meshnodev1.Decision{}
	if err := proto.Unmarshal(old.GetDecision(), d); err != nil {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: fmt.Sprintf("decision %s is unreadable: %v", req.GetId(), err)}, nil
	}
	var approve bool
	switch req.GetOutcome() {
	case meshnodev1.Choice_CHOICE_APPROVE:
		approve = true
	case meshnodev1.Choice_CHOICE_REJECT:
	default:
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: "review.outcome must be APPROVE or REJECT"}, nil
	}
	reviewed, err := quorumrules.ApplyReview(d, sc.GetOperator(), approve, req.GetReason(), at)
	if err != nil {
		return &meshnodev1.CommandResult{Status: meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, Message: err.Error()}, nil
	}
	reviewed.Review.Signature = sc
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(reviewed)
	if err != nil {
		return nil, err
	}
	rec := &meshnodev1.DecisionRecord{Id: req.GetId(), Status: DecisionReviewed, Decision: b, CreateIndex: old.GetCreateIndex(), ModifyIndex: index}
	return &meshnodev1.CommandResult{Status: statusOK, Decision: rec}, txn.Insert(tableDecisions, rec)
}
