// Package storemetrics holds the Prometheus series that every Store adapter
// keeps, under one set of names, so that an operator reads the same series
// whichever store a node runs on.
package storemetrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a store's collectors. They exist (and cost a little) even
// when nothing is registered, so a store needs no nil checks.
type Metrics struct {
	Appends       prometheus.Counter
	Duplicates    prometheus.Counter
	Mismatches    prometheus.Counter
	BatchEntries  prometheus.Histogram
	CommitSeconds prometheus.Histogram
	SweepRemoved  prometheus.Counter

	reg prometheus.Registerer
	all []prometheus.Collector
}

// New makes the common series and registers them, with the adapter's own
// extra collectors, on reg (nil: nothing is registered). batchHelp and
// commitHelp say what a batch and its commit time are in this adapter.
func New(reg prometheus.Registerer, batchHelp, commitHelp string, extra ...prometheus.Collector) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		Appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_appends_total",
			Help: "Entries appended (durably) to channels.",
		}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_duplicate_appends_total",
			Help: "Append requests answered from an idempotency key.",
		}),
		Mismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_idempotency_mismatches_total",
			Help: "Append requests refused because their idempotency key was used for other content.",
		}),
		BatchEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_store_commit_batch_entries",
			Help:    batchHelp,
			Buckets: prometheus.ExponentialBuckets(1, 2, 15),
		}),
		CommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_store_commit_seconds",
			Help:    commitHelp,
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		SweepRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_sweep_removed_total",
			Help: "Entries removed by sweeps (expired entries and tombstones).",
		}),
	}
	m.all = append([]prometheus.Collector{m.Appends, m.Duplicates, m.Mismatches, m.BatchEntries, m.CommitSeconds, m.SweepRemoved}, extra...)
	if reg == nil {
		return m, nil
	}
	for i, c := range m.all {
		if err := reg.Register(c); err != nil {
			for _, done := range m.all[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// Unregister lets a reopened store register under the same registry.
func (m *Metrics) Unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.all {
		m.reg.Unregister(c)
	}
}
