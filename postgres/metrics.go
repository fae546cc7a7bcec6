package postgres

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus collectors. They carry the names the
// embedded store's do, so that dashboards work with either store; they
// exist even when nothing is registered, so the code needs no nil checks.
type metrics struct {
	reg          prometheus.Registerer
	appends      prometheus.Counter
	duplicates   prometheus.Counter
	mismatches   prometheus.Counter
	batchEntries prometheus.Histogram
	batchCalls   prometheus.Histogram
	commitSecs   prometheus.Histogram
	sweepRemoved prometheus.Counter
	retries      prometheus.Counter
	inDoubt      *prometheus.CounterVec
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
			Help:    "Entries per group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 15),
		}),
		batchCalls: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_store_commit_batch_calls",
			Help:    "Append calls sharing one group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		commitSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_store_commit_seconds",
			Help:    "Time from a batch's first statement to its commit, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		sweepRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_sweep_removed_total",
			Help: "Entries removed by sweeps (expired entries and tombstones).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_retries_total",
			Help: "Operations tried again after a lost connection, a serialization failure or a deadlock.",
		}),
		inDoubt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_store_commits_in_doubt_total",
			Help: "Transactions whose answer to COMMIT was lost, by what the database said became of them.",
		}, []string{"outcome"}),
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
	return []prometheus.Collector{m.appends, m.duplicates, m.mismatches, m.batchEntries, m.batchCalls, m.commitSecs, m.sweepRemoved, m.retries, m.inDoubt}
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

// observe counts a committed batch.
func (m *metrics) observe(p *plan, calls int, took time.Duration) {
	m.appends.Add(float64(p.counts.appended))
	m.duplicates.Add(float64(p.counts.duplicates))
	m.mismatches.Add(float64(p.counts.mismatches))
	m.batchEntries.Observe(float64(p.counts.appended))
	m.batchCalls.Observe(float64(calls))
	m.commitSecs.Observe(took.Seconds())
}
