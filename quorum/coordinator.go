package quorum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Directory lists the agents that may vote for a selection: registered,
// ready, not flagged, with a vote key, in order of preference. For a
// capability selection it returns every such agent offering the capability;
// for explicit ids, those of them that qualify. It may be called
// concurrently.
type Directory interface {
	Voters(ctx context.Context, sel *meshnodev1.VoterSelection) ([]Voter, error)
}

// Requester asks one voter for its signed vote on p and returns it: over the
// peer transport to the voter's node, which pushes the request onto the
// agent's Serve stream and relays the agent's Vote RPC back. It must return
// when ctx is done (ctx carries the proposal's deadline). The vote need not
// be trusted: the tally verifies it. It is called concurrently, with the
// same p for every voter: it must not modify p.
type Requester interface {
	RequestVote(ctx context.Context, v Voter, p *meshnodev1.Proposal) (*meshnodev1.Vote, error)
}

// Committer records decisions durably (Raft).
type Committer interface {
	// Commit records d. A proposal id decides once: if the id already has a
	// final decision, Commit changes nothing and returns that decision.
	Commit(ctx context.Context, d *meshnodev1.Decision) (*meshnodev1.Decision, error)
	// Decision returns the recorded decision for id, or an error wrapping
	// ErrNotFound.
	Decision(ctx context.Context, id string) (*meshnodev1.Decision, error)
	// Recorded is Decision as this node's replica has it, which may lag the
	// cluster. Starting a vote reads it instead of Decision: confirming
	// absence with the leader would cost a replication round on every
	// proposal, and Commit's decide-once already covers a lagging replica
	// (the vote runs again and the first decision wins).
	Recorded(ctx context.Context, id string) (*meshnodev1.Decision, error)
}

// Coordinator runs proposals on the proposer's node: it picks the voters,
// fans out vote requests, tallies verified votes as they arrive, stops at a
// quorum, at impossibility or at the deadline, and commits the decision
// with its certificate. It owns one goroutine per running proposal and one
// per outstanding vote request; Close stops them all.
type Coordinator struct {
	cfg CoordinatorConfig
	dir Directory
	req Requester
	com Committer

	ctx    context.Context // cancelled by Close; parent of every run
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	runs      map[string]*run
	recent    map[string]*meshnodev1.Decision // finished here, by id
	recentIDs []string                        // recent's keys, oldest first
	closed    bool
}

// run is one proposal being voted on.
type run struct {
	pending *meshnodev1.Decision // immutable
	done    chan struct{}        // closed when final or err is set
	final   *meshnodev1.Decision
	err     error
}

// NewCoordinator returns a coordinator. cfg is validated; zero fields take
// their defaults.
func NewCoordinator(cfg CoordinatorConfig, dir Directory, req Requester, com Committer) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dir == nil || req == nil || com == nil {
		return nil, errors.New("quorum: NewCoordinator needs a Directory, a Requester and a Committer")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Coordinator{
		cfg: cfg.withDefaults(), dir: dir, req: req, com: com,
		ctx: ctx, cancel: cancel, runs: make(map[string]*run), recent: make(map[string]*meshnodev1.Decision),
	}, nil
}

// Propose starts p (see Start) and waits until it is final or ctx is done.
// If ctx ends first the vote goes on; Wait or the Committer has the result.
func (c *Coordinator) Propose(ctx context.Context, p *meshnodev1.Proposal) (*meshnodev1.Decision, error) {
	d, r, err := c.start(ctx, p)
	if err != nil || r == nil {
		return d, err
	}
	return r.wait(ctx)
}

// Start validates p, fills in what the node owns (payload digest if empty,
// created_at, deadline if unset, electorate), picks the voters and
// starts the vote in the background. It returns the PENDING decision, or the
// recorded one if p's id was proposed before. Errors come before any vote
// request: an invalid proposal (ErrInvalidProposal), too few voters or
// hosts (ErrTooFewVoters, ErrTooFewHosts), an id reused for a different
// proposal (ErrProposalConflict).
func (c *Coordinator) Start(ctx context.Context, p *meshnodev1.Proposal) (*meshnodev1.Decision, error) {
	d, _, err := c.start(ctx, p)
	return d, err
}

// start is Start; it also returns the run to wait on, nil if the decision
// is already final.
func (c *Coordinator) start(ctx context.Context, p *meshnodev1.Proposal) (*meshnodev1.Decision, *run, error) {
	if p == nil {
		return nil, nil, fmt.Errorf("%w: proposal is required", ErrInvalidProposal)
	}
	if len(p.GetPayload()) > c.cfg.MaxPayloadBytes {
		return nil, nil, fmt.Errorf("%w: proposal %q: payload is %d bytes, max %d; store large documents elsewhere and propose their digest",
			ErrInvalidProposal, p.GetId(), len(p.GetPayload()), c.cfg.MaxPayloadBytes)
	}
	p = proto.Clone(p).(*meshnodev1.Proposal)
	if len(p.PayloadDigest) == 0 {
		p.PayloadDigest = PayloadDigest(p.GetPayload())
	}
	p.Electorate = nil
	// A proposal already decided (or running) is returned whatever its
	// deadline and creation time say now.
	if d, r, ok, err := c.existing(ctx, p); ok || err != nil {
		return d, r, err
	}
	d, r, err := c.fresh(ctx, p)
	if err != nil {
		c.cfg.Refused(err)
	}
	return d, r, err
}

// fresh starts a vote on a proposal id not seen before: the node-owned
// fields, the policy check, the electorate, the tally and the run.
func (c *Coordinator) fresh(ctx context.Context, p *meshnodev1.Proposal) (*meshnodev1.Decision, *run, error) {
	if err := c.complete(p); err != nil {
		return nil, nil, err
	}
	// The kind's policy, not the proposer, sets the weakest terms: judged
	// before anyone is asked, and again by the state machine at commit.
	pol, err := c.cfg.Policy(ctx, p.GetKind())
	if err != nil {
		return nil, nil, fmt.Errorf("reading the quorum policy of kind %q: %w", p.GetKind(), err)
	}
	if err := CheckTerms(pol.GetPolicy(), p); err != nil {
		return nil, nil, err
	}
	candidates, err := c.dir.Voters(ctx, p.GetSelection())
	if err != nil {
		return nil, nil, fmt.Errorf("listing voters for proposal %q: %w", p.GetId(), err)
	}
	if pinned := pol.GetPolicy().GetEligibleNodes(); len(pinned) > 0 {
		candidates = slices.DeleteFunc(candidates, func(v Voter) bool { return !slices.Contains(pinned, v.Node) })
	}
	candidates = slices.DeleteFunc(candidates, func(v Voter) bool { return !KeyPinned(pol.GetPolicy(), v.PublicKey) })
	if p.GetSelection().GetCapability() != "" {
		candidates = DrawOrder(p.GetId(), candidates)
	}
	voters, err := SelectVoters(p.GetSelection(), p.GetRule(), candidates)
	if err != nil {
		return nil, nil, fmt.Errorf("choosing voters for proposal %q: %w", p.GetId(), err)
	}
	p.Electorate = Electorate(voters)
	if err := CheckElectorateAgainst(pol.GetPolicy(), p); err != nil {
		return nil, nil, err
	}
	t, err := NewTally(c.cfg.ClusterID, p, voters)
	if err != nil {
		return nil, nil, err
	}
	pending := &meshnodev1.Decision{Proposal: p, Status: meshnodev1.DecisionStatus_DECISION_STATUS_PENDING, Policy: pol}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClosed
	}
	if r, ok := c.runs[p.GetId()]; ok { // a concurrent Start won the race
		if err := conflict(r.pending.GetProposal(), p); err != nil {
			return nil, nil, err
		}
		return proto.Clone(r.pending).(*meshnodev1.Decision), r, nil
	}
	r := &run{pending: pending, done: make(chan struct{})}
	c.runs[p.GetId()] = r
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.execute(r, t, voters)
	}()
	return proto.Clone(pending).(*meshnodev1.Decision), r, nil
}

// existing returns the decision p's id already has: running here (with its
// run), recently finished here, or recorded.
func (c *Coordinator) existing(ctx context.Context, p *meshnodev1.Proposal) (*meshnodev1.Decision, *run, bool, error) {
	if p.GetId() == "" {
		return nil, nil, false, nil // invalid; complete says why
	}
	c.mu.Lock()
	r, running := c.runs[p.GetId()]
	done, finished := c.recent[p.GetId()]
	closed := c.closed
	c.mu.Unlock()
	var d *meshnodev1.Decision
	switch {
	case closed:
		return nil, nil, false, ErrClosed
	case running:
		d = proto.Clone(r.pending).(*meshnodev1.Decision)
	case finished:
		d = proto.Clone(done).(*meshnodev1.Decision)
	default:
		var err error
		d, err = c.com.Recorded(ctx, p.GetId())
		// A recorded PENDING decision is not a decision: its coordinator
		// may have died. Run the vote; the commit keeps whichever final
		// decision Raft sees first.
		if errors.Is(err, ErrNotFound) || (err == nil && d.GetStatus() == meshnodev1.DecisionStatus_DECISION_STATUS_PENDING) {
			return nil, nil, false, nil
		}
		if err != nil {
			return nil, nil, false, fmt.Errorf("looking up proposal %q: %w", p.GetId(), err)
		}
	}
	if err := conflict(d.GetProposal(), p); err != nil {
		return nil, nil, false, err
	}
	return d, r, true, nil
}

// conflict reports whether q reuses had's id for a different proposal.
func conflict(had, q *meshnodev1.Proposal) error {
	if had.GetKind() != q.GetKind() || !bytes.Equal(had.GetPayloadDigest(), q.GetPayloadDigest()) ||
		!proto.Equal(had.GetRule(), q.GetRule()) || !proto.Equal(had.GetSelection(), q.GetSelection()) {
		return fmt.Errorf("%w: %q; choose a new id", ErrProposalConflict, q.GetId())
	}
	return nil
}

// complete fills the times the node owns and validates p for a new vote.
func (c *Coordinator) complete(p *meshnodev1.Proposal) error {
	now := c.cfg.Clock.Now()
	p.CreatedAt = timestamppb.New(now) // the node's clock, not the caller's
	if p.Deadline == nil {
		p.Deadline = timestamppb.New(p.GetCreatedAt().AsTime().Add(c.cfg.DefaultDeadline))
	}
	if err := ValidateProposal(p); err != nil {
		return err
	}
	deadline := p.GetDeadline().AsTime()
	switch {
	case !deadline.After(now):
		return fmt.Errorf("%w: proposal %q: deadline %s has passed", ErrInvalidProposal, p.GetId(), deadline)
	case deadline.Sub(p.GetCreatedAt().AsTime()) > c.cfg.MaxDeadline:
		return fmt.Errorf("%w: proposal %q: deadline is more than %s after creation", ErrInvalidProposal, p.GetId(), c.cfg.MaxDeadline)
	}
	return nil
}

// Wait returns id's final decision once it has one, or ctx's error. For an
// id this coordinator neither runs nor recently finished it returns what
// the Committer has recorded (ErrNotFound if nothing).
func (c *Coordinator) Wait(ctx context.Context, id string) (*meshnodev1.Decision, error) {
	c.mu.Lock()
	r, running := c.runs[id]
	done, finished := c.recent[id]
	c.mu.Unlock()
	switch {
	case running:
		return r.wait(ctx)
	case finished:
		return proto.Clone(done).(*meshnodev1.Decision), nil
	}
	return c.com.Decision(ctx, id)
}

// wait blocks until r is final or ctx is done.
func (r *run) wait(ctx context.Context) (*meshnodev1.Decision, error) {
	select {
	case <-r.done:
		if r.err != nil {
			return nil, r.err
		}
		return proto.Clone(r.final).(*meshnodev1.Decision), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for proposal %q: %w", r.pending.GetProposal().GetId(), ctx.Err())
	}
}

// InFlight returns the PENDING decision of a proposal this coordinator is
// running, for GetDecision and ListDecisions to show before the commit.
func (c *Coordinator) InFlight(id string) (*meshnodev1.Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.runs[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(r.pending).(*meshnodev1.Decision), true
}

// Close stops every running proposal without committing it (proposing the
// id again restarts it) and waits for the goroutines to end. Requesters must
// honour context cancellation for Close to return.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// finish publishes a run's result and forgets it (the Committer has it now).
func (c *Coordinator) finish(r *run, final *meshnodev1.Decision, err error) {
	id := r.pending.GetProposal().GetId()
	c.mu.Lock()
	r.final, r.err = final, err
	delete(c.runs, id)
	if err == nil {
		// Remember recent decisions: this node's replica of Raft state may
		// not have applied the commit yet when a caller asks again.
		if len(c.recentIDs) == recentDecisions {
			delete(c.recent, c.recentIDs[0])
			c.recentIDs = c.recentIDs[1:]
		}
		c.recent[id] = final
		c.recentIDs = append(c.recentIDs, id)
	}
	c.mu.Unlock()
	close(r.done)
}

// recentDecisions is how many finished decisions a coordinator remembers.
const recentDecisions = 1024
