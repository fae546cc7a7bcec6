package publish

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
)

// Outcomes counted by syncpoint_publishes_total besides the error codes.
const (
	outcomeAppended   = "appended"
	outcomeDuplicate  = "duplicate"
	outcomeEphemeral  = "ephemeral"
	outcomeKeyChanged = "key_changed"
	// unknownBiz labels requests for a biz that does not exist, so that
	// client-chosen names never grow the label set.
	unknownBiz = "_unknown"
)

type metrics struct {
	publishes *prometheus.CounterVec
	latency   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_publishes_total",
			Help: "Publishes by biz and outcome: one per channel for appended, duplicate, ephemeral and key_changed; one per rejected request, labelled with its error code.",
		}, []string{"biz", "outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_publish_duration_seconds",
			Help:    "Time of one Publish or PublishBatch call, store append and fan-out included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	reg.MustRegister(m.publishes, m.latency)
	return m
}

func (p *Publisher) observe(start time.Time) {
	if p.metrics != nil {
		p.metrics.latency.Observe(p.clock.Now().Sub(start).Seconds())
	}
}

func (p *Publisher) countError(biz string, err error) {
	if p.metrics == nil {
		return
	}
	if biz == "" {
		biz = unknownBiz
	}
	p.metrics.publishes.WithLabelValues(biz, string(syncpoint.Code(err))).Inc()
}

// countBatchFailure counts every request that was valid as failed with the
// store's error.
func (p *Publisher) countBatchFailure(errs []error, preps []prepared) {
	if p.metrics == nil {
		return
	}
	for i := range errs {
		if errs[i] == nil {
			p.metrics.publishes.WithLabelValues(preps[i].bizLabel, string(syncpoint.CodeInternal)).Inc()
		}
	}
}

func (p *Publisher) countResults(results [][]Result, preps []prepared) {
	if p.metrics == nil {
		return
	}
	for i, res := range results {
		for _, r := range res {
			outcome := outcomeAppended
			switch {
			case r.Ephemeral:
				outcome = outcomeEphemeral
			case errors.Is(r.Err, syncpoint.ErrKeyChanged):
				outcome = outcomeKeyChanged
			case r.Err != nil:
				outcome = string(syncpoint.Code(r.Err))
			case r.Duplicate:
				outcome = outcomeDuplicate
			}
			p.metrics.publishes.WithLabelValues(preps[i].bizLabel, outcome).Inc()
		}
	}
}
