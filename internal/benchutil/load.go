package benchutil

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Load runs callers closed-loop callers against call for d and returns the
// latencies of the calls that succeeded and the number that failed.
func Load(callers int, d time.Duration, call func(ctx context.Context) error) (lat []time.Duration, errs int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for range callers {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for time.Now().Before(stop) {
				t0 := time.Now()
				if err := call(context.Background()); err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat, errs
}

// Paced issues calls at rate per second for d, each on its own goroutine
// (an open loop: a slow call does not delay the next), and returns the
// latencies of those that succeeded.
func Paced(rate int, d time.Duration, call func(ctx context.Context) error) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.After(d)
	for {
		select {
		case <-end:
			wg.Wait()
			return lat
		case <-tick.C:
			wg.Go(func() {
				t0 := time.Now()
				if call(context.Background()) == nil {
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
			})
		}
	}
}

// Micros returns the p-quantile (0..1) of lat in microseconds, 0 if empty.
func Micros(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[int(float64(len(s)-1)*p)].Microseconds())
}
