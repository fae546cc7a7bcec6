package pebble

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint/internal/storemetrics"
)

func newMetrics(reg prometheus.Registerer) (*storemetrics.Metrics, error) {
	return storemetrics.New(reg, "Entries per group-commit batch.", "Time from a batch's first write to its fsync.")
}
