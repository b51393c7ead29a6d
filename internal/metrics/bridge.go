package metrics

import (
	"sync"

	armon "github.com/armon/go-metrics"
	armonprom "github.com/armon/go-metrics/prometheus"
)

// hashicorp/raft v1.7.3 and memberlist v0.5.4 emit through
// github.com/hashicorp/go-metrics/compat, which (built without the
// hashicorpmetrics tag, as we are) forwards to armon/go-metrics' global
// sink. That global is process-wide, so it is set once, to a fan-out that
// each node's registry joins with go-metrics' own Prometheus sink and
// leaves when it stops. In a process with one node (meshnode run) the
// node's registry sees exactly its own Raft and gossip; tests that run
// several nodes in one process see them summed.
var bridge struct {
	once  sync.Once
	mu    sync.RWMutex
	sinks map[*Registry]armon.MetricSink
}

// BridgeGoMetrics makes raft's and memberlist's go-metrics appear in r
// (as raft_*, memberlist_* series) until the returned function is called.
func (r *Registry) BridgeGoMetrics() (stop func(), err error) {
	sink, err := armonprom.NewPrometheusSinkFrom(armonprom.PrometheusOpts{Registerer: r.reg})
	if err != nil {
		return nil, err
	}
	bridge.once.Do(func() {
		bridge.sinks = map[*Registry]armon.MetricSink{}
		conf := armon.DefaultConfig("")
		conf.EnableHostname, conf.EnableRuntimeMetrics, conf.EnableServiceLabel = false, false, false
		conf.EnableHostnameLabel = false
		armon.NewGlobal(conf, fanout{})
	})
	bridge.mu.Lock()
	bridge.sinks[r] = sink
	bridge.mu.Unlock()
	return func() {
		bridge.mu.Lock()
		delete(bridge.sinks, r)
		bridge.mu.Unlock()
		r.reg.Unregister(sink)
	}, nil
}

// fanout is the process's go-metrics sink: it hands each sample to every
// joined registry's sink.
type fanout struct{}

func each(f func(armon.MetricSink)) {
	bridge.mu.RLock()
	defer bridge.mu.RUnlock()
	for _, s := range bridge.sinks {
		f(s)
	}
}

func (fanout) SetGauge(k []string, v float32) { each(func(s armon.MetricSink) { s.SetGauge(k, v) }) }
func (fanout) SetGaugeWithLabels(k []string, v float32, l []armon.Label) {
	each(func(s armon.MetricSink) { s.SetGaugeWithLabels(k, v, l) })
}
func (fanout) EmitKey(k []string, v float32) { each(func(s armon.MetricSink) { s.EmitKey(k, v) }) }
func (fanout) IncrCounter(k []string, v float32) {
	each(func(s armon.MetricSink) { s.IncrCounter(k, v) })
}
func (fanout) IncrCounterWithLabels(k []string, v float32, l []armon.Label) {
	each(func(s armon.MetricSink) { s.IncrCounterWithLabels(k, v, l) })
}
func (fanout) AddSample(k []string, v float32) { each(func(s armon.MetricSink) { s.AddSample(k, v) }) }
func (fanout) AddSampleWithLabels(k []string, v float32, l []armon.Label) {
	each(func(s armon.MetricSink) { s.AddSampleWithLabels(k, v, l) })
}
