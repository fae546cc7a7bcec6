package nats

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// The kind label of the message counters.
const (
	labelEntries = "entries"
	labelEvents  = "events"
)

type metrics struct {
	published     *prometheus.CounterVec
	publishedB    *prometheus.CounterVec
	publishErrors *prometheus.CounterVec
	received      *prometheus.CounterVec
	receivedB     *prometheus.CounterVec
	lost          *prometheus.CounterVec
	reconnects    prometheus.Counter
}

// newMetrics makes the series; they are registered only when reg is not
// nil, and count either way, so the code needs no nil checks.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	kind := []string{"kind"}
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_nats_messages_published_total",
			Help: "NATS messages published by this node, by kind (entries, events); a batch above the server's max_payload takes several.",
		}, kind),
		publishedB: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_nats_published_bytes_total",
			Help: "Payload bytes of the NATS messages published by this node, by kind.",
		}, kind),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_nats_publish_errors_total",
			Help: "NATS messages this node failed to publish, by kind; other nodes miss them until they read the store.",
		}, kind),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_nats_messages_received_total",
			Help: "NATS messages received, by kind.",
		}, kind),
		receivedB: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_nats_received_bytes_total",
			Help: "Payload bytes of the NATS messages received, by kind.",
		}, kind),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_nats_lost_total",
			Help: "Lost events made for this node's listeners, by reason (reconnect, slow_consumer, malformed, gap, too_large).",
		}, []string{"reason"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncpoint_nats_reconnects_total",
			Help: "Reconnects to NATS.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.published, m.publishedB, m.publishErrors, m.received, m.receivedB, m.lost, m.reconnects}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register nats metrics: %w", err)
		}
	}
	return m, nil
}
