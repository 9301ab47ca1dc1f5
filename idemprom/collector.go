// Package idemprom reports an idem store to Prometheus: a Collector that
// is the store's Observer (counters and histograms of its calls,
// executions, waits, orphans and collections) and serves its Stats as
// gauges.
//
//	metrics := idemprom.New()
//	st, err := idem.Open(idem.Options{Dir: dir, Observer: metrics})
//	prometheus.MustRegister(metrics)
//
// Metrics:
//
//	idem_calls_total{scope,outcome}                   calls of Do and Claim: executed, replayed, mismatch, in_progress, …
//	idem_call_duration_seconds{scope,outcome}         histogram
//	idem_execution_duration_seconds{scope,outcome}    histogram: completed, failed, released, abandoned, lease_lost
//	idem_wait_duration_seconds{scope}                 histogram: duplicates waiting for a running call
//	idem_orphans_total{scope,policy}
//	idem_collections_total, idem_reclaimed_records_total, idem_reclaimed_bytes_total
//	idem_keys{scope}, idem_record_bytes{scope}        what the store holds now
//	idem_claims_in_flight, idem_disk_bytes
//
// Keys and tenants never become labels.
package idemprom

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemkit/idem"
)

// Collector is an idem.Observer, idem.StoreObserver and
// prometheus.Collector. It is safe for concurrent use.
type Collector struct {
	calls          *prometheus.CounterVec
	callDuration   *prometheus.HistogramVec
	execDuration   *prometheus.HistogramVec
	waitDuration   *prometheus.HistogramVec
	orphans        *prometheus.CounterVec
	collections    prometheus.Counter
	reclaimed      prometheus.Counter
	reclaimedBytes prometheus.Counter

	store                          atomic.Pointer[idem.Store]
	keys, bytes, inFlight, diskUse *prometheus.Desc

	mu       sync.RWMutex
	callSets map[callLabels]callMetrics // the children of calls and callDuration, found once
}

type callLabels struct{ scope, outcome string }

type callMetrics struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// forCall returns the metrics of a call's labels.
func (c *Collector) forCall(scope string, outcome idem.Outcome) callMetrics {
	k := callLabels{scope, string(outcome)}
	c.mu.RLock()
	m, ok := c.callSets[k]
	c.mu.RUnlock()
	if ok {
		return m
	}
	m = callMetrics{c.calls.WithLabelValues(k.scope, k.outcome), c.callDuration.WithLabelValues(k.scope, k.outcome)}
	c.mu.Lock()
	c.callSets[k] = m
	c.mu.Unlock()
	return m
}

// buckets are the duration histograms' bounds, in seconds: from a
// replay's tens of microseconds to a slow execution's seconds.
var buckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// New returns a Collector. Pass it as idem.Options.Observer, and register
// it with a prometheus.Registerer.
func New() *Collector {
	hist := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	}
	return &Collector{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idem_calls_total",
			Help: "Calls of Do and Claim, by outcome: executed, replayed, mismatch, in_progress, outcome_unknown, scope_full, disk_full, invalid, canceled, error."},
			[]string{"scope", "outcome"}),
		callDuration: hist("idem_call_duration_seconds", "Duration of calls of Do (execution included) and Claim.", "scope", "outcome"),
		execDuration: hist("idem_execution_duration_seconds", "Time from a claim to its end, by outcome: completed, failed, released, abandoned, lease_lost.", "scope", "outcome"),
		waitDuration: hist("idem_wait_duration_seconds", "Time a duplicate waited for a running call of its key.", "scope"),
		orphans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idem_orphans_total",
			Help: "Claims found left by an owner that died or lost its lease, by the scope's policy (rerun, report)."}, []string{"scope", "policy"}),
		collections:    prometheus.NewCounter(prometheus.CounterOpts{Name: "idem_collections_total", Help: "Runs of the expiry collector."}),
		reclaimed:      prometheus.NewCounter(prometheus.CounterOpts{Name: "idem_reclaimed_records_total", Help: "Expired records the collector deleted."}),
		reclaimedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "idem_reclaimed_bytes_total", Help: "Bytes of the expired records the collector deleted."}),
		keys:           prometheus.NewDesc("idem_keys", "Keys the store holds, by scope.", []string{"scope"}, nil),
		bytes:          prometheus.NewDesc("idem_record_bytes", "Bytes of the records the store holds, by scope.", []string{"scope"}, nil),
		inFlight:       prometheus.NewDesc("idem_claims_in_flight", "Claims held now.", nil, nil),
		diskUse:        prometheus.NewDesc("idem_disk_bytes", "Bytes the store takes on disk (0 for a backend off the local disk).", nil, nil),
		callSets:       map[callLabels]callMetrics{},
	}
}

// Observe records e.
func (c *Collector) Observe(_ context.Context, e idem.Event) {
	switch e.Kind {
	case idem.EventCall:
		m := c.forCall(e.Scope, e.Outcome)
		m.count.Inc()
		m.duration.Observe(e.Duration.Seconds())
	case idem.EventExecution:
		c.execDuration.WithLabelValues(e.Scope, string(e.Outcome)).Observe(e.Duration.Seconds())
	case idem.EventWait:
		c.waitDuration.WithLabelValues(e.Scope).Observe(e.Duration.Seconds())
	case idem.EventOrphan:
		c.orphans.WithLabelValues(e.Scope, e.Policy.String()).Inc()
	case idem.EventCollection:
		c.collections.Inc()
		c.reclaimed.Add(float64(e.Reclaimed))
		c.reclaimedBytes.Add(float64(e.ReclaimedBytes))
	}
}

// ObserveStore makes the Collector serve st's Stats as gauges.
func (c *Collector) ObserveStore(st *idem.Store) { c.store.Store(st) }

func (c *Collector) metrics() []prometheus.Collector {
	return []prometheus.Collector{c.calls, c.callDuration, c.execDuration, c.waitDuration, c.orphans, c.collections, c.reclaimed, c.reclaimedBytes}
}

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics() {
		m.Describe(ch)
	}
	ch <- c.keys
	ch <- c.bytes
	ch <- c.inFlight
	ch <- c.diskUse
}

// Collect sends every metric, the store's Stats read now.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.metrics() {
		m.Collect(ch)
	}
	st := c.store.Load()
	if st == nil {
		return
	}
	s := st.Stats()
	for name, sc := range s.Scopes {
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(sc.Keys), name)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(sc.Bytes), name)
	}
	ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.InFlight))
	ch <- prometheus.MustNewConstMetric(c.diskUse, prometheus.GaugeValue, float64(s.DiskBytes))
}
