package pebble

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus collectors; they exist (and cost a
// little) even when nothing is registered, so the code needs no nil checks.
type metrics struct {
	reg          prometheus.Registerer
	appends      prometheus.Counter
	duplicates   prometheus.Counter
	mismatches   prometheus.Counter
	batchEntries prometheus.Histogram
	commitSecs   prometheus.Histogram
	sweepRemoved prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_appends_total",
			Help: "Entries appended (durably) to channels.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_duplicate_appends_total",
			Help: "Append requests answered from an idempotency key.",
		}),
		mismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_idempotency_mismatches_total",
			Help: "Append requests refused because their idempotency key was used for other content.",
		}),
		batchEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_store_commit_batch_entries",
			Help:    "Entries per group-commit batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 15),
		}),
		commitSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_store_commit_seconds",
			Help:    "Time from a batch's first write to its fsync.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		sweepRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_sweep_removed_total",
			Help: "Entries removed by sweeps (expired entries and tombstones).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.appends, m.duplicates, m.mismatches, m.batchEntries, m.commitSecs, m.sweepRemoved}
}

// unregister lets a reopened store register under the same registry.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}
