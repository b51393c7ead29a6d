package metrics

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMaxAgents is how many agents (and, separately, capabilities) get
// their own label values per node before the rest fold under "other": a
// node rarely hosts or talks to more, and 200² pairs is already the most a
// Prometheus server should be asked to keep per node.
const DefaultMaxAgents = 200

// Config configures a Registry.
type Config struct {
	// Node and Version label meshnode_node_info. Node is required.
	Node    string
	Version string
	// MaxAgents bounds the agent and capability label values; zero means
	// DefaultMaxAgents.
	MaxAgents int
}

// Registry is one node's metrics. A process may hold several (tests run
// many nodes in one process): nothing here is global but the go-metrics
// bridge, which fans out to every registry.
type Registry struct {
	reg    *prometheus.Registry
	calls  *Calls
	quorum *Quorum
}

// New builds a registry with the Go runtime and process collectors, the
// node info series and the call metrics.
func New(cfg Config) (*Registry, error) {
	if cfg.Node == "" {
		return nil, errors.New("metrics: Config.Node is required")
	}
	if cfg.MaxAgents < 0 {
		return nil, errors.New("metrics: MaxAgents must not be negative")
	}
	if cfg.MaxAgents == 0 {
		cfg.MaxAgents = DefaultMaxAgents
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshnode_node_info", Help: "Always 1; the labels name the node and its release.",
		ConstLabels: prometheus.Labels{"node": cfg.Node, "version": cfg.Version}})
	info.Set(1)
	reg.MustRegister(info)
	calls := newCalls(reg, cfg.MaxAgents)
	return &Registry{reg: reg, calls: calls, quorum: newQuorum(reg, calls.folded)}, nil
}

// Quorum is the observer the quorum coordinator reports to.
func (r *Registry) Quorum() *Quorum { return r.quorum }

// Calls is the observer the data plane and the router report to.
func (r *Registry) Calls() *Calls { return r.calls }

// Gatherer is the registry, for tests and the go-metrics bridge.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in the text or OpenMetrics format, or
// protobuf when the scraper asks for native histograms. Errors of one
// collector are logged into the response, never fatal to the scrape.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		// A scrape never holds more than a few goroutines of the node.
		MaxRequestsInFlight: 4,
	})
}

// GaugeFunc exports fn as a gauge read at scrape time, with fixed labels
// (label name, value pairs). fn must be cheap and must not block: it runs
// on the scrape's goroutine.
func (r *Registry) GaugeFunc(name, help string, fn func() float64, labels ...string) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: constLabels(labels)}, fn))
}

// CounterFunc exports fn, a monotonic count, as a counter read at scrape
// time. The same rules as GaugeFunc.
func (r *Registry) CounterFunc(name, help string, fn func() float64, labels ...string) {
	r.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: constLabels(labels)}, fn))
}

func constLabels(pairs []string) prometheus.Labels {
	cl := prometheus.Labels{}
	for i := 0; i+1 < len(pairs); i += 2 {
		cl[pairs[i]] = pairs[i+1]
	}
	return cl
}
