package postgres

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint/internal/storemetrics"
)

// metrics are the series every store keeps (under the embedded store's
// names, so dashboards work with either) and the ones of PostgreSQL alone.
type metrics struct {
	*storemetrics.Metrics
	batchCalls prometheus.Histogram
	retries    prometheus.Counter
	inDoubt    *prometheus.CounterVec
	leases     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		batchCalls: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_store_commit_batch_calls",
			Help:    "Append calls sharing one group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_store_retries_total",
			Help: "Operations tried again after a lost connection, a serialization failure or a deadlock.",
		}),
		inDoubt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_store_commits_in_doubt_total",
			Help: "Transactions whose answer to COMMIT was lost, by what the database said became of them.",
		}, []string{"outcome"}),
		leases: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "syncpoint_leases_held",
			Help: "Leases this node holds, by name.",
		}, []string{"name"}),
	}
	common, err := storemetrics.New(reg, "Entries per group-commit transaction.",
		"Time from a batch's first statement to its commit, retries included.", m.batchCalls, m.retries, m.inDoubt, m.leases)
	if err != nil {
		return nil, err
	}
	m.Metrics = common
	return m, nil
}

// observe counts a committed batch.
func (m *metrics) observe(p *plan, calls int, took time.Duration) {
	m.Appends.Add(float64(p.counts.appended))
	m.Duplicates.Add(float64(p.counts.duplicates))
	m.Mismatches.Add(float64(p.counts.mismatches))
	m.BatchEntries.Observe(float64(p.counts.appended))
	m.batchCalls.Observe(float64(calls))
	m.CommitSeconds.Observe(took.Seconds())
}
