package agent

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent/agenttest"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// Vote shopping: a model-backed voter that would answer differently each
// time is asked again about one proposal id under another round, and under
// another electorate, by the node; and again after the agent restarts with
// the same state directory. Every answer is the first signed vote, the
// handler runs once, and the key is the same after the restart, so no
// second certificate can be formed from a second opinion.
func TestOneVotePerProposal(t *testing.T) {
	node := agenttest.NewNode(t)
	state := t.TempDir()
	var calls atomic.Int32
	start := func() (*Agent, func()) {
		a, _ := testAgent(t, node, "voter")
		a.StateDir = state
		a.HandleVote("", func(context.Context, *meshnodev1.Proposal) (Choice, string, error) {
			// A fickle model: approve first, reject after.
			if calls.Add(1) == 1 {
				return Approve, "fine", nil
			}
			return Reject, "changed my mind", nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Serve(ctx) }()
		if err := a.Up(timeout(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		return a, func() { cancel(); <-done }
	}
	a, stopA := start()
	key := ed25519.PublicKey(node.Registrations()[0].GetVotePublicKey())
	ask := func(a *Agent, round uint32, electorate ...string) *meshnodev1.Vote {
		t.Helper()
		var voters []*meshnodev1.QuorumVoter
		for _, id := range electorate {
			voters = append(voters, &meshnodev1.QuorumVoter{AgentId: id, Node: "n1"})
		}
		vr, err := node.AskVote(timeout(t, 10*time.Second), a.ID(), &meshnodev1.VoteAsk{
			Proposal:  &meshnodev1.Proposal{Id: "pay-1", Kind: "payment.approve", Payload: []byte("1000"), Round: round, Electorate: voters},
			ClusterId: "cluster-a", Deadline: timestamppb.New(time.Now().Add(10 * time.Second)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := quorum.VerifyVote(key, vr.GetVote()); err != nil {
			t.Fatalf("vote does not verify with the agent's key: %v", err)
		}
		return vr.GetVote()
	}
	first := ask(a, 0, a.ID())
	for _, again := range []*meshnodev1.Vote{ask(a, 1, a.ID()), ask(a, 0, a.ID(), "n2/other")} {
		if !proto.Equal(again, first) {
			t.Fatalf("asked again: %v, want the first vote %v", again, first)
		}
	}
	stopA() // the agent restarts with the same state directory
	b, stopB := start()
	defer stopB()
	if got := ed25519.PublicKey(node.Registrations()[len(node.Registrations())-1].GetVotePublicKey()); !got.Equal(key) {
		t.Fatal("the agent restarted with another key: its state directory did not keep it")
	}
	if again := ask(b, 2, b.ID()); !proto.Equal(again, first) || again.GetChoice() != Approve {
		t.Fatalf("asked after a restart: %v, want the first vote", again)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the vote handler ran %d times for one proposal", n)
	}
}

// The journal survives a reopen, and a torn last record (a crash in the
// middle of an append, before the vote was sent) is dropped.
func TestVoteJournalReopens(t *testing.T) {
	dir := t.TempDir()
	j, err := newVoteJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p1", "p2"} {
		if _, err := j.record(&meshnodev1.Vote{ProposalId: id, Choice: Approve}); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := j.record(&meshnodev1.Vote{ProposalId: "p1", Choice: Reject}); v.GetChoice() != Approve {
		t.Fatalf("a second vote on p1 replaced the first: %v", v)
	}
	j.close()
	f, err := os.OpenFile(filepath.Join(dir, journalFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 42}) // a record cut short
	f.Close()
	j, err = newVoteJournal(dir)
	if err != nil {
		t.Fatalf("reopening after a torn append: %v", err)
	}
	defer j.close()
	for _, id := range []string{"p1", "p2"} {
		if v, _ := j.get(id); v.GetChoice() != Approve {
			t.Fatalf("vote on %s after reopening: %v", id, v)
		}
	}
	if _, err := j.record(&meshnodev1.Vote{ProposalId: "p3", Choice: Reject}); err != nil {
		t.Fatalf("appending after the torn tail was dropped: %v", err)
	}
}
