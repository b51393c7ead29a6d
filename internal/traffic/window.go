package traffic

import "time"

// NumBounds is the number of finite latency bucket bounds; the histogram
// has one more bucket, for anything slower.
const NumBounds = 20

// Bound returns the upper bound of latency bucket i: 250 µs doubling up
// to about 131 s, so any quantile is within a factor of two of the truth
// before interpolation, with 84 bytes per histogram slot.
func Bound(i int) time.Duration { return 250 * time.Microsecond << i }

// NumBuckets is the histogram's length.
const NumBuckets = NumBounds + 1

func bucketOf(d time.Duration) int {
	for i := 0; i < NumBounds; i++ {
		if d <= Bound(i) {
			return i
		}
	}
	return NumBounds
}

// Spans are the windows every edge keeps, shortest first.
var Spans = [...]time.Duration{10 * time.Second, time.Minute, 10 * time.Minute}

// NumSpans is len(Spans).
const NumSpans = len(Spans)

// slotsPerSpan: a window is this many slots, the newest being filled, so
// a window covers between slotsPerSpan-1 and slotsPerSpan slots of time.
const slotsPerSpan = 10

type slot struct {
	epoch    int64 // which slot of time this holds: unix nanos / slot length
	requests uint32
	errors   uint32
	hist     [NumBuckets]uint32
}

// ring is one window's slots, indexed by epoch modulo their number.
type ring struct {
	slots [slotsPerSpan]slot
}

func (r *ring) add(epoch int64, ok bool, bucket int) {
	s := &r.slots[epoch%slotsPerSpan]
	if s.epoch != epoch {
		*s = slot{epoch: epoch}
	}
	s.requests++
	if !ok {
		s.errors++
	}
	s.hist[bucket]++
}

// sum adds the slots within the last slotsPerSpan epochs up to now's.
func (r *ring) sum(epoch int64, st *Stats) {
	for i := range r.slots {
		s := &r.slots[i]
		if s.epoch > epoch-slotsPerSpan && s.epoch <= epoch {
			st.Requests += uint64(s.requests)
			st.Errors += uint64(s.errors)
			for b, n := range s.hist {
				st.Buckets[b] += uint64(n)
			}
		}
	}
}

// Stats are one window's figures for one edge. They add across nodes.
type Stats struct {
	Span     time.Duration // the window: 10s, 1m or 10m
	Covered  time.Duration // the time the counts cover: the span, or less for a young edge
	Requests uint64
	Errors   uint64
	Buckets  [NumBuckets]uint64 // latency histogram, bucket i up to Bound(i)
}

// Add merges o into s: counts and buckets add, the covered time is the
// longer of the two (both sides measured the same wall-clock window).
func (s *Stats) Add(o *Stats) {
	s.Requests += o.Requests
	s.Errors += o.Errors
	for i := range s.Buckets {
		s.Buckets[i] += o.Buckets[i]
	}
	s.Covered = max(s.Covered, o.Covered)
	s.Span = max(s.Span, o.Span)
}

// Rate is requests per second over the covered time.
func (s *Stats) Rate() float64 {
	if s.Covered <= 0 {
		return 0
	}
	return float64(s.Requests) / s.Covered.Seconds()
}

// SuccessPercent is the share of requests that succeeded, 0-100; 100 for
// an edge with no requests in the window (nothing failed).
func (s *Stats) SuccessPercent() float64 {
	if s.Requests == 0 {
		return 100
	}
	return 100 * float64(s.Requests-s.Errors) / float64(s.Requests)
}

// Quantile estimates the q-quantile (0-1) of latency: the bucket holding
// it, interpolated linearly inside the bucket. Zero with no requests.
func (s *Stats) Quantile(q float64) time.Duration {
	var total uint64
	for _, n := range s.Buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range s.Buckets {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			if i == NumBounds {
				return Bound(NumBounds - 1) // beyond the last bound: say at least that
			}
			lo := time.Duration(0)
			if i > 0 {
				lo = Bound(i - 1)
			}
			frac := (rank - seen) / float64(n)
			return lo + time.Duration(frac*float64(Bound(i)-lo))
		}
		seen += float64(n)
	}
	return Bound(NumBounds - 1)
}
