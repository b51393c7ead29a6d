package routing

import "time"

// budget is a Linkerd-style retry budget for one capability: over the
// window, retries may not exceed ratio * calls + minPerSec * window. Calls
// are first attempts; a failing capability can therefore add at most
// ratio of extra load (plus the small floor), never multiply it.
type budget struct {
	w   rolling     // a: calls, b: retries
	cfg RetryConfig // the last call's, for reporting what is left
}

func (b *budget) recordCall(now time.Time, cfg RetryConfig) {
	b.cfg = cfg
	b.w.add(now, cfg.BudgetWindow, 1, 0)
}

// left is how many retries the budget would allow now.
func (b *budget) left(now time.Time) float64 {
	calls, retries := b.w.sum(now, b.cfg.BudgetWindow)
	return max(0, b.cfg.BudgetRatio*calls+b.cfg.MinRetriesPerSec*b.cfg.BudgetWindow.Seconds()-retries)
}

// tryRetry takes one retry from the budget if it has one.
func (b *budget) tryRetry(now time.Time, cfg RetryConfig) bool {
	calls, retries := b.w.sum(now, cfg.BudgetWindow)
	if retries+1 > cfg.BudgetRatio*calls+cfg.MinRetriesPerSec*cfg.BudgetWindow.Seconds() {
		return false
	}
	b.w.add(now, cfg.BudgetWindow, 0, 1)
	return true
}
