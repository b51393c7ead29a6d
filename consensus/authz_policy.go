package consensus

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/authz"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// The authorization policy is one document, replaced whole by a policy
// operator's signed SetAuthzPolicy and stored with that command, so anyone
// with the trust bundle can check who set it. It is validated here, at
// apply, by the same code the CLI runs, so no node can store a policy the
// engine would refuse to compile. Its Raft index is its version: nodes
// compile it once per version.

// authzKey is the one row's key.
const authzKey = "policy"

// authzIndexer indexes the single AuthzPolicyRecord under authzKey.
type authzIndexer struct{}

func (authzIndexer) FromObject(raw any) (bool, []byte, error) {
	if _, ok := raw.(*meshnodev1.AuthzPolicyRecord); !ok {
		return false, nil, fmt.Errorf("authz index: object is %T", raw)
	}
	return true, []byte(authzKey + "\x00"), nil
}

func (authzIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("authz index: want 1 argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("authz index: argument is %T, not string", args[0])
	}
	return []byte(s + "\x00"), nil
}

func setAuthzPolicy(txn *memdb.Txn, index uint64, sc *meshnodev1.SignedCommand, req *meshnodev1.SetAuthzPolicyRequest) (*meshnodev1.CommandResult, error) {
	if err := authz.Validate(req.GetPolicy()); err != nil {
		return invalidResult("%v", err), nil
	}
	rec := &meshnodev1.AuthzPolicyRecord{Policy: proto.CloneOf(req.GetPolicy()), Signature: sc, ModifyIndex: index}
	return ok(), txn.Insert(tableAuthz, rec)
}

// storedAuthz is the policy record in force, nil when none was set.
func storedAuthz(txn *memdb.Txn) *meshnodev1.AuthzPolicyRecord {
	return first[*meshnodev1.AuthzPolicyRecord](txn, tableAuthz, authzKey)
}

// AuthzPolicy returns the stored authorization policy, nil when none was
// set (mode allow, no rules). The record is shared: do not modify it.
func (s *Store) AuthzPolicy(ctx context.Context, opts ReadOptions) (*meshnodev1.AuthzPolicyRecord, error) {
	txn, _, err := s.view(ctx, opts)
	if err != nil {
		return nil, err
	}
	return storedAuthz(txn), nil
}

// checkServeRules refuses a registration offering a capability the stored
// policy's serve rules do not let the agent serve. It runs here, where the
// registration is applied, so a modified node cannot register its agent for
// "payment.approve" by skipping its own API's check. The agent's roles come
// from the policy's bindings over its id and the uid its node recorded;
// the roles it claims play no part. Compiling per registration is fine:
// registrations are rare, and the same compiled form would be needed on
// every replica anyway.
func checkServeRules(txn *memdb.Txn, a *meshnodev1.Agent) *meshnodev1.CommandResult {
	rec := storedAuthz(txn)
	if rec == nil {
		return nil
	}
	e, err := authz.Compile(rec.GetPolicy(), rec.GetModifyIndex())
	if err != nil {
		// Validated when stored; unreachable unless the engine changed.
		return denied(fmt.Sprintf("the stored authorization policy (index %d) does not compile: %v", rec.GetModifyIndex(), err))
	}
	sub := AuthzSubject(a)
	for _, c := range a.GetCapabilities() {
		if d := e.Serve(sub, c.GetName()); !d.Allowed {
			return denied(fmt.Sprintf("agent %s may not serve %s: %s", a.GetId(), c.GetName(), d.Rule))
		}
	}
	return nil
}

// AuthzSubject is an agent record as the authorization policy sees it: its
// id, and its owner's uid when its node recorded the owning process.
func AuthzSubject(a *meshnodev1.Agent) authz.Subject {
	return authz.Subject{ID: a.GetId(), UID: a.GetOwnerUid(), HasUID: a.GetOwnerPid() != 0}
}
