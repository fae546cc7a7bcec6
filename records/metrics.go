package records

import "github.com/prometheus/client_golang/prometheus"

// unknownBiz labels changes to a biz that does not exist, so that names a
// device makes up never grow the label set.
const unknownBiz = "_unknown"

// metrics is nil-safe: a Service without a Registerer counts nothing.
type metrics struct {
	changes  *prometheus.CounterVec
	writes   *prometheus.CounterVec
	webhooks *prometheus.CounterVec
	notices  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_record_changes_total",
			Help: "Uploaded record changes by biz and result: saved, or the error code that refused them.",
		}, []string{"biz", "result"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_record_writes_total",
			Help: "Record writes by outcome: applied, resent (answered from the stored result) or failed (whole-write error).",
		}, []string{"outcome"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_record_webhook_calls_total",
			Help: "Business webhook calls by kind (validate, notify) and outcome (accepted, rejected, failed, delivered).",
		}, []string{"kind", "outcome"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_record_notices_total",
			Help: "Upload notices by biz and event: queued, or delivered to the notify webhook.",
		}, []string{"biz", "event"}),
	}
	reg.MustRegister(m.changes, m.writes, m.webhooks, m.notices)
	return m
}

func (m *metrics) change(biz, result string) {
	if m != nil {
		m.changes.WithLabelValues(biz, result).Inc()
	}
}

func (m *metrics) write(outcome string) {
	if m != nil {
		m.writes.WithLabelValues(outcome).Inc()
	}
}

func (m *metrics) webhook(kind, outcome string) {
	if m != nil {
		m.webhooks.WithLabelValues(kind, outcome).Inc()
	}
}

func (m *metrics) notice(biz, event string, n int) {
	if m != nil && n > 0 {
		m.notices.WithLabelValues(biz, event).Add(float64(n))
	}
}
