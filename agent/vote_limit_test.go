package agent

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentmesh/meshnode/agent/agenttest"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
)

// gauge counts the vote handlers running and remembers the most at once.
type gauge struct {
	mu        sync.Mutex
	now, most int
}

func (g *gauge) enter() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.now++
	g.most = max(g.most, g.now)
}

func (g *gauge) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.now--
}

func (g *gauge) read() (now, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.now, g.most
}

// Vote requests beyond MaxVotesInFlight are shed, not queued or run: each
// is answered at once with a signed abstention that says why, and logged.
// The handlers that run hold their slots until they return; then every
// goroutine is gone (TestMain checks) and new requests run again.
func TestVoteHandlersAreBoundedAndTheRestShed(t *testing.T) {
	const bound, asks = 3, 12
	node := agenttest.NewNode(t)
	a, logs := testAgent(t, node, "voter")
	a.MaxVotesInFlight = bound
	var g gauge
	started, release := make(chan struct{}, asks), make(chan struct{})
	a.HandleVote("", func(ctx context.Context, p *meshnodev1.Proposal) (Choice, string, error) {
		g.enter()
		defer g.leave()
		started <- struct{}{}
		select {
		case <-release:
			return Approve, "looked at it", nil
		case <-ctx.Done():
			return 0, "", ctx.Err()
		}
	})
	serve(t, a)
	key := ed25519.PublicKey(node.Registrations()[0].GetVotePublicKey())

	type result struct {
		v   *meshnodev1.Vote
		err error
	}
	results := make(chan result, asks)
	ask := func(id string) {
		vr, err := node.AskVote(timeout(t, 20*time.Second), a.ID(), &meshnodev1.VoteAsk{
			Proposal:  &meshnodev1.Proposal{Id: id, Kind: "payment.approve", Payload: []byte(id)},
			ClusterId: "cluster-a", Deadline: timestamppb.New(time.Now().Add(20 * time.Second)),
		})
		results <- result{vr.GetVote(), err}
	}
	for i := range asks {
		go ask(fmt.Sprint("p", i))
	}

	// While the first handlers hold their slots, every other request comes
	// back shed. A handler past the bound fails the test at once.
	var shed []*meshnodev1.Vote
	deadline := time.After(10 * time.Second)
	for running := 0; running < bound || len(shed) < asks-bound; {
		select {
		case <-started:
			running++
			if running > bound {
				t.Fatalf("%d vote handlers started with MaxVotesInFlight %d", running, bound)
			}
		case r := <-results:
			if r.err != nil {
				t.Fatalf("a vote request failed instead of being shed: %v", r.err)
			}
			shed = append(shed, r.v)
		case <-deadline:
			t.Fatalf("after 10s: %d handlers running, %d requests shed; want %d and %d", running, len(shed), bound, asks-bound)
		}
	}
	for _, v := range shed {
		if v.GetChoice() != Abstain || !strings.Contains(v.GetReason(), "MaxVotesInFlight") {
			t.Errorf("shed request answered %v %q, want ABSTAIN naming MaxVotesInFlight", v.GetChoice(), v.GetReason())
		}
		if err := quorum.VerifyVote(key, v); err != nil {
			t.Errorf("shed vote does not verify: %v", err)
		}
	}
	if n := logs.count("shed a vote request"); n != asks-bound {
		t.Errorf("%d shed requests logged, want %d:\n%s", n, asks-bound, logs)
	}
	if !strings.Contains(logs.String(), "raise Agent.MaxVotesInFlight") {
		t.Errorf("the shed log line does not say how to raise the bound:\n%s", logs)
	}

	close(release)
	for range bound {
		if r := <-results; r.err != nil || r.v.GetChoice() != Approve {
			t.Errorf("a running handler's vote: %v %v, want APPROVE", r.v.GetChoice(), r.err)
		}
	}
	// The slots came back: a new request runs instead of being shed.
	go ask("after")
	if r := <-results; r.err != nil || r.v.GetChoice() != Approve {
		t.Errorf("a request after the others finished: %v %v, want APPROVE", r.v.GetChoice(), r.err)
	}
	if _, most := g.read(); most > bound {
		t.Errorf("%d vote handlers ran at once, want at most %d", most, bound)
	}
}
