package quorum

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// BenchmarkVoteSignature measures what one vote costs the voter (NewVote:
// encode, hash the payload and terms, sign) and the coordinator (VerifyVote),
// against raw ed25519.Sign and ed25519.Verify over the same message,
// interleaved in the same loop. Medians, so that preemption on a shared
// machine does not dominate.
func BenchmarkVoteSignature(b *testing.B) {
	ms := newMembers(4)
	p := newProposal("p1", bft(), ms)
	m := ms[0]
	var sign, verify, rawSign, rawVerify []time.Duration
	for b.Loop() {
		t0 := time.Now()
		v := NewVote(testCluster, p, approve, "looks right", m.AgentID, m.Node, m.priv)
		t1 := time.Now()
		if err := VerifyVote(m.PublicKey, v); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		msg := VoteMessage(v)
		t3 := time.Now()
		sig := ed25519.Sign(m.priv, msg)
		t4 := time.Now()
		if !ed25519.Verify(m.PublicKey, msg, sig) {
			b.Fatal("raw verify failed")
		}
		t5 := time.Now()
		sign = append(sign, t1.Sub(t0))
		verify = append(verify, t2.Sub(t1))
		rawSign = append(rawSign, t4.Sub(t3))
		rawVerify = append(rawVerify, t5.Sub(t4))
	}
	s, v, rs, rv := percentile(sign, .5), percentile(verify, .5), percentile(rawSign, .5), percentile(rawVerify, .5)
	b.ReportMetric(us(s), "sign-us")
	b.ReportMetric(us(v), "verify-us")
	b.ReportMetric(us(rs), "baseline-sign-us")
	b.ReportMetric(us(rv), "baseline-verify-us")
	b.ReportMetric(float64(s)/float64(rs), "sign-ratio")
	b.ReportMetric(float64(v)/float64(rv), "verify-ratio")
}

// BenchmarkTally measures a full tally (NewTally, Add every vote, Outcome,
// Certificate) against the raw ed25519.Verify of the same votes, the floor
// any tally must pay, interleaved in the same loop (medians).
func BenchmarkTally(b *testing.B) {
	for _, n := range []int{4, 7, 100} {
		b.Run(fmt.Sprintf("voters=%d", n), func(b *testing.B) {
			ms := newMembers(n)
			p := newProposal("p1", bft(), ms)
			voters := votersOf(ms)
			votes := make([]*meshnodev1.Vote, n)
			msgs := make([][]byte, n)
			for i, m := range ms {
				votes[i] = m.vote(p, approve)
				msgs[i] = VoteMessage(votes[i])
			}
			var tally, raw []time.Duration
			for b.Loop() {
				t0 := time.Now()
				tl, err := NewTally(testCluster, p, voters)
				if err != nil {
					b.Fatal(err)
				}
				for _, v := range votes {
					_ = tl.Add(v)
				}
				if o, _ := tl.Outcome(); o != OutcomeDecided {
					b.Fatal("not decided")
				}
				if _, err := tl.Certificate(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				for i, v := range votes {
					ed25519.Verify(voters[i].PublicKey, msgs[i], v.GetSignature())
				}
				tally = append(tally, t1.Sub(t0))
				raw = append(raw, time.Since(t1))
			}
			t, r := percentile(tally, .5), percentile(raw, .5)
			b.ReportMetric(us(t), "tally-us")
			b.ReportMetric(us(t)/float64(n), "per-vote-us")
			b.ReportMetric(us(r), "baseline-verify-us")
			b.ReportMetric(float64(t)/float64(r), "ratio")
		})
	}
}

// benchRequester signs a vote for every request at once, as an agent that
// agrees immediately would.
type benchRequester struct{ byID map[string]member }

func (r benchRequester) RequestVote(_ context.Context, v Voter, p *meshnodev1.Proposal) (*meshnodev1.Vote, error) {
	return r.byID[v.AgentID].vote(p, approve), nil
}

// nullCommitter commits nothing: the Raft commit is excluded here (the
// lead's end-to-end benchmark includes it).
type nullCommitter struct{}

func (nullCommitter) Commit(_ context.Context, d *meshnodev1.Decision) (*meshnodev1.Decision, error) {
	return d, nil
}

func (nullCommitter) Decision(context.Context, string) (*meshnodev1.Decision, error) {
	return nil, ErrNotFound
}

func (nullCommitter) Recorded(context.Context, string) (*meshnodev1.Decision, error) {
	return nil, ErrNotFound
}

// BenchmarkCoordinatorLatency measures Propose to decision with in-memory
// voters that answer at once (fan-out, signing, verification, tally and
// certificate; no network, no Raft). Baseline: the same votes signed and
// tallied sequentially on one goroutine, the crypto floor.
func BenchmarkCoordinatorLatency(b *testing.B) {
	for _, n := range []int{4, 7} {
		b.Run(fmt.Sprintf("voters=%d", n), func(b *testing.B) {
			ms := newMembers(n)
			req := benchRequester{byID: map[string]member{}}
			for _, m := range ms {
				req.byID[m.AgentID] = m
			}
			c, err := NewCoordinator(CoordinatorConfig{ClusterID: testCluster}, &fakeDirectory{members: ms}, req, nullCommitter{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			var lat, base []time.Duration
			i := 0
			start := time.Now()
			for b.Loop() {
				i++
				p := capProposal(fmt.Sprintf("bench-%d", i), uint32(n), time.Minute)
				t0 := time.Now()
				d, err := c.Propose(ctx, p)
				if err != nil || d.GetStatus() != meshnodev1.DecisionStatus_DECISION_STATUS_DECIDED {
					b.Fatalf("%v %v", d.GetStatus(), err)
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			b.StopTimer()
			for j := range len(lat) {
				p := newProposal(fmt.Sprintf("base-%d", j), bft(), ms)
				t0 := time.Now()
				tl, _ := NewTally(testCluster, p, votersOf(ms))
				for _, m := range ms {
					_ = tl.Add(m.vote(p, approve))
					if o, _ := tl.Outcome(); o == OutcomeDecided {
						break
					}
				}
				_, _ = tl.Certificate()
				base = append(base, time.Since(t0))
			}
			p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
			b50 := percentile(base, 0.50)
			b.ReportMetric(us(p50), "p50-us")
			b.ReportMetric(us(p99), "p99-us")
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "decisions/s")
			b.ReportMetric(us(b50), "baseline-p50-us")
			b.ReportMetric(float64(p50)/float64(b50), "ratio")
		})
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
