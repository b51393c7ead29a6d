package quorum

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

type harness struct {
	ms    []member
	req   *fakeRequester
	com   *fakeCommitter
	coord *Coordinator
}

// newHarness must be called inside a synctest bubble; the coordinator is
// closed when the test ends.
func newHarness(t *testing.T, n int) *harness {
	t.Helper()
	ms := newMembers(n)
	h := &harness{ms: ms, req: newFakeRequester(ms), com: newFakeCommitter()}
	cfg := CoordinatorConfig{ClusterID: testCluster}
	var err error
	h.coord, err = NewCoordinator(cfg, &fakeDirectory{members: ms}, h.req, h.com)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.coord.Close() })
	return h
}

func capProposal(id string, n uint32, timeout time.Duration) *meshnodev1.Proposal {
	return &meshnodev1.Proposal{
		Id:        id,
		Kind:      "payment.approve",
		Payload:   []byte(`{"amount": 1200}`),
		Selection: &meshnodev1.VoterSelection{Capability: "payment.approve", Count: n},
		Deadline:  timestamppb.New(time.Now().Add(timeout)),
	}
}

func (h *harness) keys() KeyLookup { return NewKeyMap(votersOf(h.ms)...) }

func TestCoordinatorDecidesDespiteOneLiar(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		h.req.how[h.ms[2].AgentID] = answers(h.ms[2], reject)
		d, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED || d.GetOutcome() != approve {
			t.Fatalf("decision %s %s (%s), want decided approve", d.GetStatus(), d.GetOutcome(), d.GetDetail())
		}
		if err := VerifyCertificateSignatures(d.GetCertificate(), h.keys()); err != nil {
			t.Fatalf("certificate: %v", err)
		}
		if len(d.GetProposal().GetElectorate()) != 4 || d.GetCommitIndex() == 0 {
			t.Fatalf("decision not committed with its electorate: %v", d)
		}
	})
}

func TestCoordinatorSilentVoterDoesNotDelayQuorum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		h.req.how[h.ms[0].AgentID] = staysSilent()
		start := time.Now()
		d, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED || time.Since(start) != 0 {
			t.Fatalf("decision %s after %s, want decided at once", d.GetStatus(), time.Since(start))
		}
		synctest.Wait() // the silent voter's request was cancelled and returned
	})
}

func TestCoordinatorNoQuorumAtDeadline(t *testing.T) {
	for _, tt := range []struct {
		action meshnodev1.NoQuorumAction
		status meshnodev1.DecisionStatus
		want   meshnodev1.Choice
	}{
		{meshnodev1.NoQuorumAction_NO_QUORUM_ACTION_UNSPECIFIED, meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM, reject},
		{meshnodev1.NoQuorumAction_NO_QUORUM_ACTION_ESCALATE, meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW, meshnodev1.Choice_CHOICE_UNSPECIFIED},
	} {
		t.Run(tt.action.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, 4)
				h.req.how[h.ms[0].AgentID] = staysSilent()
				h.req.how[h.ms[1].AgentID] = staysSilent()
				p := capProposal("p1", 4, 10*time.Second)
				p.OnNoQuorum = tt.action
				start := time.Now()
				d, err := h.coord.Propose(t.Context(), p)
				if err != nil {
					t.Fatal(err)
				}
				if d.GetStatus() != tt.status || d.GetOutcome() != tt.want || d.GetCertificate() != nil {
					t.Fatalf("decision %s %s cert %v, want %s %s without certificate", d.GetStatus(), d.GetOutcome(), d.GetCertificate() != nil, tt.status, tt.want)
				}
				if time.Since(start) != 10*time.Second {
					t.Fatalf("decided after %s, want at the 10s deadline", time.Since(start))
				}
				if len(d.GetVotes()) != 2 {
					t.Fatalf("%d votes recorded, want the 2 that came", len(d.GetVotes()))
				}
			})
		})
	}
}

// Votes that arrive after the deadline do not count, even if they would
// have made a quorum.
func TestCoordinatorIgnoresLateVotes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		h.req.how[h.ms[0].AgentID] = answersAfter(h.ms[0], approve, 11*time.Second)
		h.req.how[h.ms[1].AgentID] = answersAfter(h.ms[1], approve, 12*time.Second)
		d, err := h.coord.Propose(t.Context(), capProposal("p1", 4, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM {
			t.Fatalf("decision %s (%s), want no quorum", d.GetStatus(), d.GetDetail())
		}
		time.Sleep(5 * time.Second) // let the late answers arrive: they change nothing
		again, err := h.coord.Propose(t.Context(), capProposal("p1", 4, 10*time.Second))
		if err != nil || !proto.Equal(again, d) {
			t.Fatalf("decision changed after late votes: %v %v", again, err)
		}
	})
}

// A vote whose answer is delivered after the deadline on the coordinator's
// clock is discarded even if the timer has not been seen yet.
func TestCoordinatorLateVoteOnInjectedClock(t *testing.T) {
	ms := newMembers(4)
	clock := &steppedClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	req := newFakeRequester(ms)
	deadline := clock.Now().Add(time.Second)
	var once sync.Once
	req.how[ms[3].AgentID] = func(_ context.Context, p *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
		once.Do(func() { clock.set(deadline.Add(time.Millisecond)) })
		return ms[3].vote(p, approve), nil
	}
	req.how[ms[0].AgentID] = unreachable()
	gate := make(chan struct{})
	for _, m := range ms[1:3] {
		req.how[m.AgentID] = func(_ context.Context, p *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
			<-gate // answer only after ms[3] moved the clock past the deadline
			return m.vote(p, approve), nil
		}
	}
	com := newFakeCommitter()
	c, err := NewCoordinator(CoordinatorConfig{ClusterID: testCluster, Clock: clock}, &fakeDirectory{members: ms}, req, com)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := capProposal("p1", 4, time.Second)
	p.Deadline = timestamppb.New(deadline)
	if _, err := c.Start(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !clock.Now().Before(deadline) }) // ms[3] was asked and moved the clock
	close(gate)
	d, err := c.Wait(t.Context(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM {
		t.Fatalf("decision %s (%s), want no quorum: every answer came after the deadline", d.GetStatus(), d.GetDetail())
	}
}

func TestCoordinatorUnreachableVotersEndEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		h.req.how[h.ms[0].AgentID] = unreachable()
		h.req.how[h.ms[1].AgentID] = unreachable()
		start := time.Now()
		d, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM || time.Since(start) != 0 {
			t.Fatalf("decision %s after %s, want no quorum at once", d.GetStatus(), time.Since(start))
		}
	})
}

// A compromised node answers for its own agent with votes claiming to be
// agents on other nodes; none count and the honest majority decides.
func TestCoordinatorCompromisedNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		evil := h.ms[3]
		h.req.how[evil.AgentID] = func(_ context.Context, p *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
			return NewVote(testCluster, p, reject, "", h.ms[0].AgentID, h.ms[0].Node, evil.priv), nil
		}
		h.req.how[h.ms[0].AgentID] = answersAfter(h.ms[0], approve, time.Second)
		d, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if d.GetOutcome() != approve || len(d.GetVotes()) != 3 {
			t.Fatalf("decision %s with %d votes, want approve by the 3 honest voters", d.GetOutcome(), len(d.GetVotes()))
		}
	})
}

func TestCoordinatorTooFewHostsFailsBeforeFanOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 3)
		_, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if !errors.Is(err, ErrTooFewHosts) {
			t.Fatalf("Propose = %v, want ErrTooFewHosts", err)
		}
		if h.req.totalCalls() != 0 {
			t.Fatalf("%d vote requests sent before the electorate check", h.req.totalCalls())
		}
	})
}

func TestCoordinatorDecidesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		p := capProposal("p1", 4, time.Minute)
		var wg sync.WaitGroup
		results := make([]*meshnodev1.Decision, 5)
		for i := range results {
			wg.Go(func() {
				d, err := h.coord.Propose(t.Context(), p)
				if err != nil {
					t.Error(err)
				}
				results[i] = d
			})
		}
		wg.Wait()
		for _, d := range results[1:] {
			if !proto.Equal(d, results[0]) {
				t.Fatalf("concurrent proposals of one id got different decisions")
			}
		}
		again, err := h.coord.Propose(t.Context(), p)
		if err != nil || !proto.Equal(again, results[0]) {
			t.Fatalf("proposing again: %v, %v", again, err)
		}
		synctest.Wait()
		if h.req.totalCalls() != 4 || h.com.commitCount() != 1 {
			t.Fatalf("%d vote requests and %d commits, want 4 and 1", h.req.totalCalls(), h.com.commitCount())
		}
		time.Sleep(2 * time.Minute) // past the deadline: the decision is still returned
		if late, err := h.coord.Propose(t.Context(), p); err != nil || !proto.Equal(late, results[0]) {
			t.Fatalf("proposing again after the deadline: %v, %v", late, err)
		}
		changed := proto.Clone(p).(*meshnodev1.Proposal)
		changed.Payload = []byte(`{"amount": 999999}`)
		if _, err := h.coord.Propose(t.Context(), changed); !errors.Is(err, ErrProposalConflict) {
			t.Fatalf("reusing the id for another payload: %v, want ErrProposalConflict", err)
		}
	})
}

// If another node committed the id first, the coordinator returns that
// decision, not its own.
func TestCoordinatorReturnsCommittedDecision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		first, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		// A second node runs the same id with voters that now reject; its
		// lookup misses (the race), its commit finds the winner.
		ms := newMembers(4)
		req := newFakeRequester(ms)
		for _, m := range ms {
			req.how[m.AgentID] = answers(m, reject)
		}
		second, err := NewCoordinator(CoordinatorConfig{ClusterID: testCluster}, &fakeDirectory{members: ms}, req, &racingCommitter{h.com})
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		d, err := second.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil || !proto.Equal(d, first) {
			t.Fatalf("second coordinator: %v %v, want the first decision", d.GetOutcome(), err)
		}
	})
}

// racingCommitter pretends nothing was committed yet when asked, as when two
// nodes run one id at once.
type racingCommitter struct{ *fakeCommitter }

func (r *racingCommitter) Recorded(_ context.Context, id string) (*meshnodev1.Decision, error) {
	return nil, ErrNotFound
}

// A replica that lags may hide that the id was decided for another
// proposal: the vote runs, and the commit's answer reveals the conflict.
func TestCoordinatorConflictBehindLaggingReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		p := capProposal("p1", 4, time.Minute)
		if _, err := h.coord.Propose(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		other, err := NewCoordinator(CoordinatorConfig{ClusterID: testCluster}, &fakeDirectory{members: h.ms}, h.req, &racingCommitter{h.com})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		changed := proto.Clone(p).(*meshnodev1.Proposal)
		changed.Payload = []byte(`{"amount": 999999}`)
		if _, err := other.Propose(t.Context(), changed); !errors.Is(err, ErrProposalConflict) {
			t.Fatalf("reusing the id behind a lagging replica: %v, want ErrProposalConflict", err)
		}
		if d, err := h.com.Decision(t.Context(), "p1"); err != nil || string(d.GetProposal().GetPayload()) != string(p.GetPayload()) {
			t.Fatalf("recorded decision changed: %v, %v", d.GetProposal().GetPayload(), err)
		}
	})
}

func TestCoordinatorStartReturnsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		for _, m := range h.ms {
			h.req.how[m.AgentID] = answersAfter(m, approve, time.Second)
		}
		d, err := h.coord.Start(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_PENDING || len(d.GetProposal().GetElectorate()) != 4 ||
			len(d.GetProposal().GetPayloadDigest()) != DigestSize || d.GetProposal().GetCreatedAt() == nil {
			t.Fatalf("Start returned %v, want a pending decision with the node-owned fields filled", d)
		}
		if inflight, ok := h.coord.InFlight("p1"); !ok || !proto.Equal(inflight, d) {
			t.Fatalf("InFlight = %v, %v", inflight, ok)
		}
		final, err := h.coord.Wait(t.Context(), "p1")
		if err != nil || final.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED {
			t.Fatalf("Wait = %v, %v", final.GetStatus(), err)
		}
		if _, ok := h.coord.InFlight("p1"); ok {
			t.Fatal("a committed proposal is still in flight")
		}
		if _, err := h.coord.Wait(t.Context(), "unknown"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Wait(unknown) = %v, want ErrNotFound", err)
		}
	})
}

func TestCoordinatorCloseStopsRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		for _, m := range h.ms {
			h.req.how[m.AgentID] = staysSilent()
		}
		if _, err := h.coord.Start(t.Context(), capProposal("p1", 4, time.Minute)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		done := make(chan error, 1)
		go func() { _, err := h.coord.Wait(context.Background(), "p1"); done <- err }()
		synctest.Wait()
		h.coord.Close() // returns only once every goroutine ended
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait after Close = %v, want ErrClosed", err)
		}
		if h.com.commitCount() != 0 {
			t.Fatal("a closed coordinator committed")
		}
		if _, err := h.coord.Start(t.Context(), capProposal("p2", 4, time.Minute)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Start after Close = %v, want ErrClosed", err)
		}
	})
}

func TestCoordinatorCommitFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		h.com.err = errors.New("raft: leadership lost")
		if _, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute)); err == nil {
			t.Fatal("Propose succeeded although the commit failed")
		}
		h.com.err = nil // proposing again retries the vote
		d, err := h.coord.Propose(t.Context(), capProposal("p1", 4, time.Minute))
		if err != nil || d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED {
			t.Fatalf("retry: %v %v", d.GetStatus(), err)
		}
	})
}

func TestCoordinatorRejectsBadProposals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		past := capProposal("p1", 4, time.Minute)
		past.Deadline = timestamppb.New(time.Now().Add(-time.Second))
		far := capProposal("p2", 4, time.Hour)
		big := capProposal("p3", 4, time.Minute)
		big.Payload = make([]byte, 2<<20)
		digest := capProposal("p4", 4, time.Minute)
		digest.PayloadDigest = PayloadDigest([]byte("something else"))
		for _, p := range []*meshnodev1.Proposal{nil, past, far, big, digest} {
			if _, err := h.coord.Propose(t.Context(), p); !errors.Is(err, ErrInvalidProposal) {
				t.Errorf("Propose(%s) = %v, want ErrInvalidProposal", p.GetId(), err)
			}
		}
		if h.req.totalCalls() != 0 {
			t.Fatal("invalid proposals were sent to voters")
		}
	})
}

func TestCoordinatorConfigValidate(t *testing.T) {
	if err := (CoordinatorConfig{}).Validate(); err == nil {
		t.Fatal("empty ClusterID accepted")
	}
	if err := (CoordinatorConfig{ClusterID: "c", DefaultDeadline: time.Hour}).Validate(); err == nil {
		t.Fatal("DefaultDeadline above MaxDeadline accepted")
	}
	if err := (CoordinatorConfig{ClusterID: "c", CommitTimeout: -1}).Validate(); err == nil {
		t.Fatal("negative CommitTimeout accepted")
	}
	if _, err := NewCoordinator(CoordinatorConfig{ClusterID: "c"}, nil, nil, nil); err == nil {
		t.Fatal("nil dependencies accepted")
	}
}

// steppedClock is a Clock the test moves by hand; its timers never fire on
// their own (the deadline is reached by set).
type steppedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *steppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *steppedClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *steppedClock) After(time.Duration) <-chan time.Time { return nil }

// Sleep never ends on its own either: only ctx ends it.
func (c *steppedClock) Sleep(ctx context.Context, _ time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A PENDING record left by a coordinator that died does not block the id:
// proposing it again runs the vote.
func TestCoordinatorRerunsRecordedPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 4)
		p := capProposal("p1", 4, time.Minute)
		stale := proto.Clone(p).(*meshnodev1.Proposal)
		stale.PayloadDigest = PayloadDigest(stale.GetPayload())
		h.com.byID["p1"] = &meshnodev1.Decision{Proposal: stale, Status: meshnodev1.DecisionStatus_DECISION_STATUS_PENDING}
		d, err := h.coord.Propose(t.Context(), p)
		if err != nil || d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED {
			t.Fatalf("Propose over a stale pending record: %v, %v", d.GetStatus(), err)
		}
	})
}

// The node's replica may not have applied a commit yet: the coordinator
// still answers for ids it decided itself, without voting again.
func TestCoordinatorRemembersRecentDecisions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMembers(4)
		req := newFakeRequester(ms)
		c, err := NewCoordinator(CoordinatorConfig{ClusterID: testCluster}, &fakeDirectory{members: ms}, req, &racingCommitter{newFakeCommitter()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p := capProposal("p1", 4, time.Minute)
		first, err := c.Propose(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, get := range []func() (*meshnodev1.Decision, error){
			func() (*meshnodev1.Decision, error) { return c.Propose(t.Context(), p) },
			func() (*meshnodev1.Decision, error) { return c.Wait(t.Context(), "p1") },
		} {
			if d, err := get(); err != nil || !proto.Equal(d, first) {
				t.Fatalf("asking again: %v, %v", d.GetStatus(), err)
			}
		}
		synctest.Wait() // every fan-out goroutine has asked its voter
		if req.totalCalls() != 4 {
			t.Fatalf("%d vote requests, want 4: the id was voted on again", req.totalCalls())
		}
	})
}
