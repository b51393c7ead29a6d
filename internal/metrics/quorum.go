package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxKinds bounds the kind label of quorum metrics: kinds are chosen by
// proposers, so past this many the rest fold under Other.
const maxKinds = 100

// Quorum is what the quorum coordinator reports: decisions by kind, status
// and outcome, how long votes took, equivocations caught, and proposals
// refused before fan-out.
type Quorum struct {
	kinds     *folder
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	equivocs  prometheus.Counter
	refused   *prometheus.CounterVec
}

func newQuorum(reg prometheus.Registerer, folded *prometheus.CounterVec) *Quorum {
	q := &Quorum{
		kinds: newFolder(maxKinds, folded.WithLabelValues("kind")),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_quorum_decisions_total",
			Help: "Decisions this node coordinated, by kind, status (decided, no_quorum, needs_review) and outcome."}, []string{"kind", "status", "outcome"}),
		duration: prometheus.NewHistogramVec(histogramOpts("meshnode_quorum_vote_seconds",
			"From proposal to the end of voting, for proposals this node coordinated, by kind."), []string{"kind"}),
		equivocs: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshnode_quorum_equivocations_total",
			Help: "Equivocations (two different signed votes by one agent on one proposal) caught by this node's tallies."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshnode_quorum_refused_total",
			Help: "Proposals refused before any vote request, by reason (below_policy, too_few_voters, invalid)."}, []string{"reason"}),
	}
	reg.MustRegister(q.decisions, q.duration, q.equivocs, q.refused)
	return q
}

// Decided records one finished proposal.
func (q *Quorum) Decided(kind, status, outcome string, voting time.Duration, equivocations int) {
	k := q.kinds.label(kind)
	q.decisions.WithLabelValues(k, status, outcome).Inc()
	q.duration.WithLabelValues(k).Observe(voting.Seconds())
	q.equivocs.Add(float64(equivocations))
}

// Refused records a proposal refused before fan-out.
func (q *Quorum) Refused(reason string) { q.refused.WithLabelValues(reason).Inc() }
