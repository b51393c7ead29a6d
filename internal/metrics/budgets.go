package metrics

import "github.com/prometheus/client_golang/prometheus"

// budgetCollector reads the router's retry budgets at scrape time.
type budgetCollector struct {
	desc *prometheus.Desc
	caps *folder
	read func() map[string]float64
}

// RetryBudgets exports, per capability, the retries its budget would allow
// now, read from fn at scrape time (fn must be cheap and not block).
// Capabilities past the label limit are summed under "other".
func (r *Registry) RetryBudgets(fn func() map[string]float64) {
	r.reg.MustRegister(&budgetCollector{
		desc: prometheus.NewDesc("meshnode_routing_retry_budget_left", "Retries the capability's retry budget would allow now, as this node's router counts it.", []string{"capability"}, nil),
		caps: r.calls.caps, read: fn,
	})
}

func (b *budgetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	sums := map[string]float64{}
	for c, left := range b.read() {
		sums[b.caps.label(c)] += left
	}
	for c, left := range sums {
		ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, left, c)
	}
}
