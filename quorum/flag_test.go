package quorum

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// recordingFlagger remembers what it was asked to flag; fail makes it refuse.
type recordingFlagger struct {
	flagged []string
	fail    error
}

func (f *recordingFlagger) FlagAgent(_ context.Context, id, reason string, _ *meshnodev1.EquivocationEvidence) error {
	if f.fail != nil {
		return f.fail
	}
	f.flagged = append(f.flagged, id+": "+reason)
	return nil
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestFlagEquivocatorsFlagsOnlyVerifiedEvidence: real evidence flags its
// agent; evidence whose second vote was forged (signed by another key), as
// a compromised coordinator could record, flags nobody.
func TestFlagEquivocatorsFlagsOnlyVerifiedEvidence(t *testing.T) {
	ms := newMembers(3)
	p := newProposal("p1", bft(), ms)
	keys := NewKeyMap(votersOf(ms)...)
	real, err := NewEvidence(ms[0].vote(p, approve), ms[0].vote(p, reject))
	if err != nil {
		t.Fatal(err)
	}
	forgedVote := ms[2].vote(p, reject)
	forgedVote.VoterAgentId, forgedVote.VoterNode = ms[1].AgentID, ms[1].Node
	forged := &meshnodev1.EquivocationEvidence{AgentId: ms[1].AgentID, First: ms[1].vote(p, approve), Second: forgedVote}
	d := &meshnodev1.Decision{Proposal: p, Equivocations: []*meshnodev1.EquivocationEvidence{real, forged}}

	f := &recordingFlagger{}
	got := FlagEquivocators(context.Background(), d, keys, f, discard)
	if !slices.Equal(got, []string{ms[0].AgentID}) {
		t.Fatalf("flagged %v, want only %s", got, ms[0].AgentID)
	}
	if want := ms[0].AgentID + ": equivocated on proposal p1"; !slices.Equal(f.flagged, []string{want}) {
		t.Fatalf("flag calls %v, want [%s]", f.flagged, want)
	}

	f = &recordingFlagger{fail: errors.New("no leader")}
	if got := FlagEquivocators(context.Background(), d, keys, f, discard); len(got) != 0 {
		t.Fatalf("a refused flag is reported as flagged: %v", got)
	}
}

// TestFlagDoubleVote: two different signed votes flag the agent; the same
// vote twice, a pair by two agents, or a pair whose signatures do not verify
// against the registered key flag nobody.
func TestFlagDoubleVote(t *testing.T) {
	ms := newMembers(3)
	p := newProposal("p2", bft(), ms)
	keys := NewKeyMap(votersOf(ms)...)
	ctx := context.Background()

	f := &recordingFlagger{}
	if !FlagDoubleVote(ctx, ms[0].vote(p, approve), ms[0].vote(p, reject), keys, f, discard) {
		t.Fatal("two different signed votes did not flag the agent")
	}
	if want := ms[0].AgentID + ": signed two different votes on proposal p2"; !slices.Equal(f.flagged, []string{want}) {
		t.Fatalf("flag calls %v, want [%s]", f.flagged, want)
	}

	otherKeys := NewKeyMap(ms[1].Voter, ms[2].Voter, Voter{AgentID: ms[0].AgentID, Node: ms[0].Node, PublicKey: ms[1].PublicKey})
	cases := map[string]struct {
		a, b *meshnodev1.Vote
		keys KeyLookup
	}{
		"same vote twice":        {ms[0].vote(p, approve), ms[0].vote(p, approve), keys},
		"two agents":             {ms[0].vote(p, approve), ms[1].vote(p, reject), keys},
		"not the registered key": {ms[0].vote(p, approve), ms[0].vote(p, reject), otherKeys},
	}
	for name, c := range cases {
		f := &recordingFlagger{}
		if FlagDoubleVote(ctx, c.a, c.b, c.keys, f, discard) || len(f.flagged) != 0 {
			t.Errorf("%s: flagged %v", name, f.flagged)
		}
	}
}
