package consensus

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	quorumrules "github.com/agentmesh/meshnode/quorum"
)

// Quorum policies are set by a policy operator's signed command and kept
// with that command, so a verifier with the trust bundle can check who set
// them. The state machine commits a decided proposal only if it carries the
// policy in force for its kind, meets it, and its certificate verifies
// against the vote keys in this state: a coordinator (any node) cannot
// record a decision the cluster's rules do not back.

// defaultPolicyKey is the stored key of the cluster default (kind "").
const defaultPolicyKey = "*"

func quorumPolicyKey(kind string) string {
	if kind == "" {
		return defaultPolicyKey
	}
	return kind
}

// quorumPolicyIndexer indexes a QuorumPolicyRecord by its policy's kind.
type quorumPolicyIndexer struct{}

func (quorumPolicyIndexer) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*meshnodev1.QuorumPolicyRecord)
	if !ok {
		return false, nil, fmt.Errorf("quorum policy index: object is %T", raw)
	}
	return true, []byte(quorumPolicyKey(r.GetPolicy().GetKind()) + "\x00"), nil
}

func (quorumPolicyIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("quorum policy index: want 1 argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("quorum policy index: argument is %T, not string", args[0])
	}
	return []byte(s + "\x00"), nil
}

func setQuorumPolicy(txn *memdb.Txn, index uint64, sc *meshnodev1.SignedCommand, req *meshnodev1.SetQuorumPolicyRequest) (*meshnodev1.CommandResult, error) {
	if err := quorumrules.ValidatePolicy(req.GetPolicy()); err != nil {
		return invalidResult("%v", err), nil
	}
	rec := &meshnodev1.QuorumPolicyRecord{Policy: proto.CloneOf(req.GetPolicy()), Signature: sc, ModifyIndex: index}
	return ok(), txn.Insert(tableQuorumPolicies, rec)
}

// effectivePolicy is the record in force for kind: its own, the cluster
// default, or the built-in default (no signature, index 0).
func effectivePolicy(txn *memdb.Txn, kind string) *meshnodev1.QuorumPolicyRecord {
	if r := first[*meshnodev1.QuorumPolicyRecord](txn, tableQuorumPolicies, quorumPolicyKey(kind)); r != nil {
		return r
	}
	if r := first[*meshnodev1.QuorumPolicyRecord](txn, tableQuorumPolicies, defaultPolicyKey); r != nil {
		return r
	}
	return &meshnodev1.QuorumPolicyRecord{Policy: quorumrules.DefaultPolicy()}
}

// stateClusterID is the cluster id votes sign, from the trust bundle in
// state ("" before a bundle is written, which only tests do).
func stateClusterID(txn *memdb.Txn) string {
	b := first[*meshnodev1.TrustBundleRecord](txn, tableBundle, bundleKey)
	if b == nil {
		return ""
	}
	return hex.EncodeToString(ClusterID(b.GetBundle()))
}

// checkDecided refuses a decided proposal that does not carry the policy in
// force for its kind, does not meet it, or whose certificate does not
// verify with the vote keys registered in this state. Decisions without a
// certificate (pending, no quorum, needs review) carry no claim to check.
func checkDecided(txn *memdb.Txn, rec *meshnodev1.DecisionRecord) *meshnodev1.CommandResult {
	d := &meshnodev1.Decision{}
	if err := proto.Unmarshal(rec.GetDecision(), d); err != nil {
		if rec.GetStatus() == DecisionStatusName(meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED) {
			return invalidResult("decision %s is unreadable: %v", rec.GetId(), err)
		}
		return nil // opaque to the state machine, and claims nothing it checks
	}
	// The record's status is what readers filter on; it must say what the
	// decision inside says, so a decided one cannot pass as unchecked.
	if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_UNSPECIFIED && DecisionStatusName(d.GetStatus()) != rec.GetStatus() {
		return invalidResult("decision %s: record status %q but the decision says %s", rec.GetId(), rec.GetStatus(), d.GetStatus())
	}
	if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED {
		return nil
	}
	p := d.GetProposal()
	inForce := effectivePolicy(txn, p.GetKind())
	if !proto.Equal(d.GetPolicy().GetPolicy(), inForce.GetPolicy()) || d.GetPolicy().GetModifyIndex() != inForce.GetModifyIndex() {
		return denied(fmt.Sprintf("decision %s was judged under a quorum policy (index %d) that is not the one in force for kind %q (index %d); propose it again",
			rec.GetId(), d.GetPolicy().GetModifyIndex(), p.GetKind(), inForce.GetModifyIndex()))
	}
	if err := quorumrules.CheckTerms(inForce.GetPolicy(), p); err != nil {
		return denied(err.Error())
	}
	if err := quorumrules.CheckElectorateAgainst(inForce.GetPolicy(), p); err != nil {
		return denied(err.Error())
	}
	if err := quorumrules.CheckVoterKeys(inForce.GetPolicy(), p, stateKeys{txn}); err != nil {
		return denied(err.Error())
	}
	if err := quorumrules.VerifyDecision(stateClusterID(txn), d, stateKeys{txn}); err != nil {
		return denied(fmt.Sprintf("decision %s: %v", rec.GetId(), err))
	}
	return nil
}

// DecisionStatusName is the record status of a decision status ("decided",
// "no_quorum", ...): what a DecisionRecord is filed under, and what the
// state machine checks it against.
func DecisionStatusName(s meshnodev1.DecisionStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "DECISION_STATUS_"))
}

// QuorumPolicies lists the stored quorum policies.
func (s *Store) QuorumPolicies(ctx context.Context, opts ReadOptions) ([]*meshnodev1.QuorumPolicyRecord, uint64, error) {
	return list[*meshnodev1.QuorumPolicyRecord](s, ctx, opts, tableQuorumPolicies, "id", nil)
}

// QuorumPolicy returns the policy in force for kind, as the state machine
// will judge a decision of that kind.
func (s *Store) QuorumPolicy(ctx context.Context, opts ReadOptions, kind string) (*meshnodev1.QuorumPolicyRecord, error) {
	txn, _, err := s.view(ctx, opts)
	if err != nil {
		return nil, err
	}
	return proto.CloneOf(effectivePolicy(txn, kind)), nil
}
