package routing

import "time"

const windowSlots = 10

// rolling counts two quantities over a sliding window split into ten slots;
// a slot older than the window is forgotten. The error is at most one slot.
type rolling struct {
	width time.Duration
	slot  [windowSlots]int64 // absolute slot number each bucket holds
	a, b  [windowSlots]float64
}

func (r *rolling) reset(window time.Duration) {
	*r = rolling{width: max(window/windowSlots, time.Nanosecond)}
}

func (r *rolling) bucket(now time.Time, window time.Duration) int {
	if w := max(window/windowSlots, time.Nanosecond); w != r.width {
		r.reset(window)
	}
	n := now.UnixNano() / int64(r.width)
	i := int(n % windowSlots)
	if i < 0 {
		i += windowSlots
	}
	if r.slot[i] != n {
		r.slot[i], r.a[i], r.b[i] = n, 0, 0
	}
	return i
}

func (r *rolling) add(now time.Time, window time.Duration, a, b float64) {
	i := r.bucket(now, window)
	r.a[i] += a
	r.b[i] += b
}

func (r *rolling) sum(now time.Time, window time.Duration) (a, b float64) {
	r.bucket(now, window)
	n := now.UnixNano() / int64(r.width)
	for i := range windowSlots {
		if r.slot[i] > n-windowSlots && r.slot[i] <= n {
			a += r.a[i]
			b += r.b[i]
		}
	}
	return a, b
}
