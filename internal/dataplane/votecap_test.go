package dataplane

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/agentmesh/meshnode/internal/hub"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"github.com/agentmesh/meshnode/routing"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A peer that forwards a vote request whose proposal names a deadline a
// century away holds nothing on this node past MaxVoteWait: not the wait,
// not the deadline the agent is told, not the hub's memory of the request.
// The real hub runs behind the plane, on synctest's virtual clock.
func TestForwardedVoteDeadlineIsCappedEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxWait, memory = time.Minute, 30 * time.Second
		h, err := hub.New(hub.Config{Node: "n1", VoteMemory: memory, ProcessAlive: func(int32) bool { return true }})
		if err != nil {
			t.Fatal(err)
		}
		h.Start()
		defer h.Close()
		r, err := routing.NewRouter(routing.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(Config{LocalNode: "n1", MaxPayload: 1 << 20, CallTimeout: 10 * time.Second, MaxVoteWait: maxWait,
			Local: h, Catalog: fakeCatalog{agent: "n1/v", node: "n1"}, Router: r, Peers: noPeers{}})
		if err != nil {
			t.Fatal(err)
		}

		// The voter serves on the hub and never answers.
		if err := h.Claim("n1/v", me); err != nil {
			t.Fatal(err)
		}
		asks := make(chan *meshnodev1.VoteAsk, 1)
		sctx, stopServing := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() {
			served <- h.Serve(sctx, me, &meshnodev1.ServeRequest{AgentId: "v"}, func(ev *meshnodev1.ServeResponse) error {
				if v := ev.GetVote(); v != nil {
					asks <- v
				}
				return nil
			})
		}()
		defer func() { stopServing(); <-served }()
		synctest.Wait() // the stream is open

		start := time.Now()
		century := start.Add(100 * 365 * 24 * time.Hour)
		res := make(chan error, 1)
		go func() {
			_, err := p.ReceiveVote(context.Background(), "n0", &meshnodev1.ForwardVoteRequest{VoterAgentId: "n1/v",
				Proposal: &meshnodev1.Proposal{Id: "p", Deadline: timestamppb.New(century)}})
			res <- err
		}()
		ask := <-asks
		if told := ask.GetDeadline().AsTime(); told.After(start.Add(maxWait)) {
			t.Errorf("the agent was told to answer by %v, %v away; want at most MaxVoteWait (%v)", told, told.Sub(start), maxWait)
		}
		if err := <-res; status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("unanswered vote: %v, want DeadlineExceeded", err)
		}
		if waited := time.Since(start); waited > maxWait {
			t.Errorf("the vote was waited for %v, want at most MaxVoteWait (%v)", waited, maxWait)
		}

		// Past the capped deadline and the hub's vote memory (and one reap),
		// the request is forgotten: a late vote is refused, not taken.
		time.Sleep(maxWait + memory + 2*time.Second)
		err = h.Vote(context.Background(), "n1/v", &meshnodev1.VoteRequest{RequestId: ask.GetRequestId(),
			Vote: &meshnodev1.Vote{VoterAgentId: "n1/v", ProposalId: "p", Choice: meshnodev1.Choice_CHOICE_APPROVE}})
		if !errors.Is(err, hub.ErrVoteNotPending) {
			t.Errorf("a vote %v after the request: %v, want ErrVoteNotPending (the hub still remembers it)", time.Since(start), err)
		}
	})
}

// By default a peer's vote request is waited for as long as any valid
// proposal may run (the coordinator's MaxDeadline), no longer: a shorter
// cap would drop the remote votes of proposals the coordinator accepted.
func TestMaxVoteWaitDefaultsToTheLongestProposal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		longest := quorum.DefaultCoordinatorConfig().MaxDeadline
		l := &fakeLocal{}
		r, err := routing.NewRouter(routing.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(Config{LocalNode: "n1", MaxPayload: 1 << 20, CallTimeout: 10 * time.Second,
			Local: l, Catalog: fakeCatalog{agent: "n1/v", node: "n1"}, Router: r, Peers: noPeers{}})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name           string
			deadline, want time.Duration
		}{
			{"a proposal of the longest valid deadline", longest, longest},
			{"a proposal beyond it", 100 * 365 * 24 * time.Hour, longest},
		} {
			if _, err := p.ReceiveVote(context.Background(), "n0", &meshnodev1.ForwardVoteRequest{VoterAgentId: "n1/v",
				Proposal: &meshnodev1.Proposal{Id: "p", Deadline: timestamppb.New(time.Now().Add(tc.deadline))}}); err != nil {
				t.Fatal(err)
			}
			if d, ok := l.voteCtx.Deadline(); !ok || time.Until(d) != tc.want {
				t.Errorf("%s: waited until %v from now, want %v", tc.name, time.Until(d), tc.want)
			}
		}
	})
}
