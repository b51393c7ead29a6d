package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"google.golang.org/protobuf/proto"
)

// Decisions keeps quorum decisions in the consensus store: it is the
// coordinator's quorum.Committer, and what QuorumService reads and reviews.
// A committed decision's equivocation evidence is acted on here, once per
// commit, through quorum.FlagEquivocators.
type Decisions struct {
	store *consensus.Store
	keys  func(ctx context.Context) quorum.KeyLookup
	log   *slog.Logger
}

var _ quorum.Committer = (*Decisions)(nil)

// NewDecisions returns the decision store; keys looks up agents' registered
// vote keys (the catalog's VoteKeys).
func NewDecisions(st *consensus.Store, keys func(ctx context.Context) quorum.KeyLookup, log *slog.Logger) *Decisions {
	return &Decisions{store: st, keys: keys, log: log}
}

// Commit records d and returns the decision that stands, flagging the
// agents its evidence convicts.
func (ds *Decisions) Commit(ctx context.Context, d *meshnodev1.Decision) (*meshnodev1.Decision, error) {
	b, err := proto.Marshal(d)
	if err != nil {
		return nil, err
	}
	id := d.GetProposal().GetId()
	rec, _, err := ds.store.PutDecision(ctx, &meshnodev1.DecisionRecord{Id: id, Status: consensus.DecisionStatusName(d.GetStatus()), Decision: b})
	if err != nil {
		return nil, apierror.Wrap("commit decision "+id, err)
	}
	out, err := decode(id, rec)
	if err != nil {
		return nil, err
	}
	if len(out.GetEquivocations()) > 0 {
		quorum.FlagEquivocators(ctx, out, ds.keys(ctx), ds, ds.log)
	}
	return out, nil
}

// FlagAgent bars an agent from voter sets; the store makes a repeat of the
// same (agent, reason) a no-op.
func (ds *Decisions) FlagAgent(ctx context.Context, agentID, reason string, evidence *meshnodev1.EquivocationEvidence) error {
	_, _, err := ds.store.FlagAgent(ctx, agentID, reason, evidence)
	return err
}

// SecondVote is the hub's hook for a second vote on an answered request:
// two different signed votes flag their agent.
func (ds *Decisions) SecondVote(ctx context.Context, first, second *meshnodev1.Vote) {
	quorum.FlagDoubleVote(ctx, first, second, ds.keys(ctx), ds, ds.log)
}

// Decision returns the recorded decision for id. The local replica may lag a
// decision just committed elsewhere: it confirms with the leader before
// saying there is none.
func (ds *Decisions) Decision(ctx context.Context, id string) (*meshnodev1.Decision, error) {
	rec, _, err := ds.store.Decision(ctx, consensus.ReadOptions{}, id)
	if errors.Is(err, consensus.ErrNotFound) {
		rec, _, err = ds.store.Decision(ctx, consensus.ReadOptions{Consistency: consensus.Consistent}, id)
	}
	return decodeRecord(id, rec, err)
}

// Recorded is Decision as this node's replica has it.
func (ds *Decisions) Recorded(ctx context.Context, id string) (*meshnodev1.Decision, error) {
	rec, _, err := ds.store.Decision(ctx, consensus.ReadOptions{}, id)
	return decodeRecord(id, rec, err)
}

func decodeRecord(id string, rec *meshnodev1.DecisionRecord, err error) (*meshnodev1.Decision, error) {
	if errors.Is(err, consensus.ErrNotFound) {
		return nil, fmt.Errorf("decision %s: %w", id, quorum.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return decode(id, rec)
}

func decode(id string, rec *meshnodev1.DecisionRecord) (*meshnodev1.Decision, error) {
	d := &meshnodev1.Decision{}
	if err := proto.Unmarshal(rec.GetDecision(), d); err != nil {
		return nil, fmt.Errorf("%w: decision %s does not decode: %v", consensus.ErrStorage, id, err)
	}
	d.CommitIndex = rec.GetModifyIndex()
	return d, nil
}
