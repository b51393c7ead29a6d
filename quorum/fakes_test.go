package quorum

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// fakeDirectory lists fixed candidates.
type fakeDirectory struct{ members []member }

func (d *fakeDirectory) Voters(_ context.Context, sel *meshnodev1.VoterSelection) ([]Voter, error) {
	if len(sel.GetAgentIds()) == 0 {
		return votersOf(d.members), nil
	}
	var out []Voter
	for _, m := range d.members {
		for _, id := range sel.GetAgentIds() {
			if m.AgentID == id {
				out = append(out, m.Voter)
			}
		}
	}
	return out, nil
}

// voteFunc is how one fake voter answers.
type voteFunc func(ctx context.Context, p *meshnodev1.Proposal) (*meshnodev1.Vote, error)

// fakeRequester answers vote requests with per-agent behaviour; agents
// without one answer approve at once.
type fakeRequester struct {
	byID  map[string]member
	how   map[string]voteFunc
	mu    sync.Mutex
	calls map[string]int
}

func newFakeRequester(ms []member) *fakeRequester {
	r := &fakeRequester{byID: map[string]member{}, how: map[string]voteFunc{}, calls: map[string]int{}}
	for _, m := range ms {
		r.byID[m.AgentID] = m
	}
	return r
}

func (r *fakeRequester) RequestVote(ctx context.Context, v Voter, p *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
	r.mu.Lock()
	r.calls[v.AgentID]++
	how := r.how[v.AgentID]
	r.mu.Unlock()
	if how != nil {
		return how(ctx, p)
	}
	return r.byID[v.AgentID].vote(p, approve), nil
}

func (r *fakeRequester) totalCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

// Voter behaviours.
func answers(m member, c meshnodev1.Choice) voteFunc {
	return func(_ context.Context, p *meshnodev1.Proposal) (*meshnodev1.Vote, error) { return m.vote(p, c), nil }
}

func staysSilent() voteFunc {
	return func(ctx context.Context, _ *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
}

func unreachable() voteFunc {
	return func(context.Context, *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
		return nil, fmt.Errorf("dial: connection refused")
	}
}

// answersAfter answers after d, ignoring cancellation, like a slow agent
// whose answer is already on the wire.
func answersAfter(m member, c meshnodev1.Choice, d time.Duration) voteFunc {
	return func(_ context.Context, p *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
		time.Sleep(d)
		return m.vote(p, c), nil
	}
}

// fakeCommitter is an in-memory Committer with Raft's decide-once rule.
type fakeCommitter struct {
	mu      sync.Mutex
	byID    map[string]*meshnodev1.Decision
	commits int
	err     error
}

func newFakeCommitter() *fakeCommitter {
	return &fakeCommitter{byID: map[string]*meshnodev1.Decision{}}
}

func (c *fakeCommitter) Commit(_ context.Context, d *meshnodev1.Decision) (*meshnodev1.Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	c.commits++
	id := d.GetProposal().GetId()
	if had, ok := c.byID[id]; ok && had.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_PENDING {
		return proto.Clone(had).(*meshnodev1.Decision), nil
	}
	stored := proto.Clone(d).(*meshnodev1.Decision)
	stored.CommitIndex = uint64(c.commits)
	c.byID[id] = stored
	return proto.Clone(stored).(*meshnodev1.Decision), nil
}

func (c *fakeCommitter) Recorded(ctx context.Context, id string) (*meshnodev1.Decision, error) {
	return c.Decision(ctx, id)
}

func (c *fakeCommitter) Decision(_ context.Context, id string) (*meshnodev1.Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.byID[id]
	if !ok {
		return nil, fmt.Errorf("proposal %q: %w", id, ErrNotFound)
	}
	return proto.Clone(d).(*meshnodev1.Decision), nil
}

func (c *fakeCommitter) commitCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commits
}
