package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent/agenttest"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

func TestVotesAreSignedWithTheRegisteredKey(t *testing.T) {
	node := agenttest.NewNode(t)
	a, logs := testAgent(t, node, "voter")
	a.KeyFile = filepath.Join(t.TempDir(), "voter.key")
	a.HandleVote("payment.approve", func(ctx context.Context, p *meshnodev1.Proposal) (Choice, string, error) {
		switch string(p.GetPayload()) {
		case "ok":
			return Approve, "within limits", nil
		case "error":
			return 0, "", errors.New("fraud service down")
		case "invalid":
			return meshnodev1.Choice_CHOICE_UNSPECIFIED, "", nil
		}
		return Reject, "over limit", nil
	})
	serve(t, a) // a voter needs no capability

	key := ed25519.PublicKey(node.Registrations()[0].GetVotePublicKey())
	proposal := func(kind, payload string) *meshnodev1.Proposal {
		return &meshnodev1.Proposal{
			Id: "p-" + payload, Kind: kind, Payload: []byte(payload), Round: 2,
			Electorate: []*meshnodev1.QuorumVoter{{AgentId: "test-node/voter", Node: "test-node"}},
		}
	}
	ask := func(p *meshnodev1.Proposal) *meshnodev1.VoteRequest {
		t.Helper()
		vr, err := node.AskVote(timeout(t, 10*time.Second), a.ID(), &meshnodev1.VoteAsk{
			Proposal: p, ClusterId: "cluster-a", Deadline: timestamppb.New(time.Now().Add(10 * time.Second)),
		})
		if err != nil {
			t.Fatal(err)
		}
		v := vr.GetVote()
		if err := quorum.VerifyVote(key, v); err != nil {
			t.Errorf("vote does not verify against the registered key: %v", err)
		}
		if v.GetClusterId() != "cluster-a" || v.GetProposalId() != p.GetId() || v.GetRound() != 2 ||
			v.GetVoterAgentId() != "test-node/voter" || v.GetVoterNode() != "test-node" ||
			!bytes.Equal(v.GetPayloadDigest(), quorum.PayloadDigest(p.GetPayload())) ||
			!bytes.Equal(v.GetTermsDigest(), quorum.ProposalTerms(p)) {
			t.Errorf("vote = %v", v)
		}
		return vr
	}

	if v := ask(proposal("payment.approve", "ok")).GetVote(); v.GetChoice() != Approve || v.GetReason() != "within limits" {
		t.Errorf("vote %v %q, want APPROVE within limits", v.GetChoice(), v.GetReason())
	}
	if v := ask(proposal("payment.approve", "huge")).GetVote(); v.GetChoice() != Reject {
		t.Errorf("vote %v, want REJECT", v.GetChoice())
	}
	if v := ask(proposal("deploy.prod", "x")).GetVote(); v.GetChoice() != Abstain || v.GetReason() == "" {
		t.Errorf("kind without a handler: vote %v %q, want ABSTAIN with a reason", v.GetChoice(), v.GetReason())
	}

	// A failing handler or an invalid choice casts no vote.
	for i, payload := range []string{"error", "invalid"} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := node.AskVote(ctx, a.ID(), &meshnodev1.VoteAsk{Proposal: proposal("payment.approve", payload)})
			done <- err
		}()
		waitFor(t, 10*time.Second, "the refusal to vote to be logged", func() bool { return logs.count("casting no vote") == i+1 })
		cancel()
		if err := <-done; err == nil {
			t.Errorf("payload %q: a vote was cast", payload)
		}
	}
	if n := len(node.Votes()); n != 3 {
		t.Errorf("%d votes reached the node, want 3", n)
	}
}

func TestCallerCancellationReachesTheHandler(t *testing.T) {
	node := agenttest.NewNode(t)
	t.Cleanup(func() {
		// Runs after Serve has returned, so every answer has been sent.
		if n := node.StrayAnswers(); n != 0 {
			t.Errorf("%d answers sent for withdrawn calls, want none", n)
		}
	})
	a, _ := testAgent(t, node, "cancellable")
	started, cause := make(chan struct{}), make(chan error, 1)
	a.Handle(Capability{Name: "long"}, func(ctx context.Context, r *Request) (*Response, error) {
		close(started)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	serve(t, a)

	c := dial(t, node)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, "long", nil)
		errc <- err
	}()
	<-started
	cancel()
	select {
	case err := <-cause:
		if !errors.Is(err, ErrCallCanceled) {
			t.Errorf("context.Cause = %v, want ErrCallCanceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler not cancelled after the caller gave up")
	}
	if err := <-errc; err == nil {
		t.Error("cancelled Call succeeded")
	}
}
