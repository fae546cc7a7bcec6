package httpapi

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type apiMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncpoint_http_requests_total",
			Help: "Business API requests by route pattern and HTTP status.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "syncpoint_http_request_duration_seconds",
			Help:    "Business API request latency by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// routeMetrics are one route's instruments, bound once so a request pays
// for one label lookup (its status) only.
type routeMetrics struct {
	label    string
	requests *prometheus.CounterVec
	latency  prometheus.Observer
}

func (m *apiMetrics) route(label string) *routeMetrics {
	return &routeMetrics{label: label, requests: m.requests, latency: m.latency.WithLabelValues(label)}
}

func (m *routeMetrics) observe(status int, d time.Duration) {
	if status == 0 {
		status = 200
	}
	m.requests.WithLabelValues(m.label, strconv.Itoa(status)).Inc()
	m.latency.Observe(d.Seconds())
}
