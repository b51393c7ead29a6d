package traffic

import (
	"fmt"
	"slices"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Reported is an edge with the nodes whose measurements it holds.
type Reported struct {
	Edge
	Nodes []string
}

type pair struct{ caller, callee, capability string }

// Merge folds edges reported by several nodes (or both sides on one node)
// into one per caller, callee and capability. Each call is counted once:
// the caller side's figures are used where any node reported them, since
// only the caller's node sees a call end to end (retries included); the
// callee side's only for pairs whose caller's node did not answer.
func Merge(in []Reported) []Reported {
	merged := map[pair]*Reported{}
	var order []pair
	for i := range in {
		r := &in[i]
		p := pair{r.Caller, r.Callee, r.Capability}
		m := merged[p]
		switch {
		case m == nil:
			c := Reported{Edge: r.Edge, Nodes: slices.Clone(r.Nodes)}
			merged[p] = &c
			order = append(order, p)
			continue
		case m.Side == CalleeSide && r.Side == CallerSide:
			*m = Reported{Edge: r.Edge, Nodes: slices.Clone(r.Nodes)} // the better side replaces
			continue
		case m.Side != r.Side:
			continue // a callee-side report of a pair the caller side covers
		}
		for w := range m.Windows {
			m.Windows[w].Add(&r.Windows[w])
		}
		for _, n := range r.Nodes {
			if !slices.Contains(m.Nodes, n) {
				m.Nodes = append(m.Nodes, n)
			}
		}
	}
	out := make([]Reported, 0, len(order))
	for _, p := range order {
		m := merged[p]
		slices.Sort(m.Nodes)
		out = append(out, *m)
	}
	return out
}

// LatencyBoundsMs lists the histogram's bucket bounds for the API.
func LatencyBoundsMs() []float64 {
	out := make([]float64, NumBounds)
	for i := range out {
		out[i] = ms(Bound(i))
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ToProto puts an edge on the wire with its derived figures.
func ToProto(r *Reported) *meshnodev1.TrafficEdge {
	side := meshnodev1.TrafficSide_TRAFFIC_SIDE_CALLER
	if r.Side == CalleeSide {
		side = meshnodev1.TrafficSide_TRAFFIC_SIDE_CALLEE
	}
	out := &meshnodev1.TrafficEdge{CallerAgent: r.Caller, CalleeAgent: r.Callee, Capability: r.Capability, Side: side, Nodes: r.Nodes}
	for i := range r.Windows {
		st := &r.Windows[i]
		out.Windows = append(out.Windows, &meshnodev1.TrafficWindow{
			Seconds: uint32(st.Span / time.Second), Requests: st.Requests, Errors: st.Errors,
			RequestsPerSecond: st.Rate(), SuccessPercent: st.SuccessPercent(),
			P50Ms: ms(st.Quantile(.5)), P99Ms: ms(st.Quantile(.99)),
			LatencyBuckets: st.Buckets[:], CoveredMs: uint64(st.Covered / time.Millisecond),
		})
	}
	return out
}

// FromProto reads a peer's edge back for merging. A peer is an
// authenticated node, but its answer is still checked for shape: a
// malformed edge is an error, not a panic.
func FromProto(p *meshnodev1.TrafficEdge) (Reported, error) {
	r := Reported{Edge: Edge{Key: Key{Caller: p.GetCallerAgent(), Callee: p.GetCalleeAgent(), Capability: p.GetCapability()}}, Nodes: p.GetNodes()}
	switch p.GetSide() {
	case meshnodev1.TrafficSide_TRAFFIC_SIDE_CALLER:
		r.Side = CallerSide
	case meshnodev1.TrafficSide_TRAFFIC_SIDE_CALLEE:
		r.Side = CalleeSide
	default:
		return r, fmt.Errorf("edge %s→%s (%s): side %v", r.Caller, r.Callee, r.Capability, p.GetSide())
	}
	if len(p.GetWindows()) != NumSpans {
		return r, fmt.Errorf("edge %s→%s (%s): %d windows, want %d", r.Caller, r.Callee, r.Capability, len(p.GetWindows()), NumSpans)
	}
	for i, w := range p.GetWindows() {
		if len(w.GetLatencyBuckets()) != NumBuckets || time.Duration(w.GetSeconds())*time.Second != Spans[i] {
			return r, fmt.Errorf("edge %s→%s (%s): window %d has %d buckets over %ds, want %d over %v", r.Caller, r.Callee, r.Capability,
				i, len(w.GetLatencyBuckets()), w.GetSeconds(), NumBuckets, Spans[i])
		}
		st := &r.Windows[i]
		st.Span, st.Requests, st.Errors = Spans[i], w.GetRequests(), w.GetErrors()
		st.Covered = min(time.Duration(w.GetCoveredMs())*time.Millisecond, Spans[i])
		copy(st.Buckets[:], w.GetLatencyBuckets())
	}
	return r, nil
}
