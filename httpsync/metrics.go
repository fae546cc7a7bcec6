package httpsync

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sessions  prometheus.Counter // queue sessions started
	items     prometheus.Counter // queue items delivered
	acks      prometheus.Counter // ack keys taken
	changes   prometheus.Counter // one-shot changes answered
	longPolls prometheus.Gauge   // one-shot requests waiting now
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sessions:  prometheus.NewCounter(prometheus.CounterOpts{Name: "syncpoint_httpsync_sessions_total", Help: "HTTP sync queue sessions started."}),
		items:     prometheus.NewCounter(prometheus.CounterOpts{Name: "syncpoint_httpsync_queue_items_total", Help: "Items delivered in HTTP sync queue pages."}),
		acks:      prometheus.NewCounter(prometheus.CounterOpts{Name: "syncpoint_httpsync_ack_keys_total", Help: "Ack keys taken by HTTP sync."}),
		changes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "syncpoint_httpsync_oneshot_changes_total", Help: "Records and messages answered by one-shot HTTP sync."}),
		longPolls: prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncpoint_httpsync_long_polls", Help: "One-shot HTTP sync requests waiting for something new."}),
	}
	if reg != nil {
		reg.MustRegister(m.sessions, m.items, m.acks, m.changes, m.longPolls)
	}
	return m
}
