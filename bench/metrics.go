package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/syncpoint/syncpoint/apiclient"
)

// The server metrics the idle scenario reads.
const (
	metricRSS        = "process_resident_memory_bytes"
	metricHeapInuse  = "go_memstats_heap_inuse_bytes"
	metricHeapAlloc  = "go_memstats_heap_alloc_bytes"
	metricLastGC     = "go_memstats_last_gc_time_seconds"
	metricStackInuse = "go_memstats_stack_inuse_bytes"
	metricGoroutines = "go_goroutines"
	metricSessions   = "syncpoint_sessions"
)

// maxMetricsBytes bounds what is read of /metrics.
const maxMetricsBytes = 16 << 20

// scrapeMetrics reads the /metrics of server i (an index into
// Target.Servers) and returns the samples without labels (the
// process-wide gauges).
func (r *runner) scrapeMetrics(ctx context.Context, i int) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.t.Servers[i]+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	resp, err := r.api.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("scrape metrics: %w", &apiclient.StatusError{Status: resp.StatusCode, Body: b})
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	return parseMetrics(body), nil
}

// scrapeAll reads every server's /metrics at once, so that the readings
// of a cluster are taken at about the same moment. The error is the first
// server's that failed; a failed server's samples are nil.
func (r *runner) scrapeAll(ctx context.Context) ([]map[string]float64, error) {
	out := make([]map[string]float64, len(r.t.Servers))
	errs := make([]error, len(r.t.Servers))
	var wg sync.WaitGroup
	for i := range r.t.Servers {
		wg.Go(func() { out[i], errs[i] = r.scrapeMetrics(ctx, i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			if len(errs) > 1 {
				err = fmt.Errorf("server %d (%s): %w", i+1, r.t.Servers[i], err)
			}
			return out, err
		}
	}
	return out, nil
}

// sumMetrics adds up the servers' samples name by name: the memory and the
// sessions of a cluster. Only amounts mean anything summed; the idle
// scenario reads the times of the last collections from each server.
func sumMetrics(ms []map[string]float64) map[string]float64 {
	out := make(map[string]float64)
	for _, m := range ms {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}

// parseMetrics reads the unlabelled samples of the Prometheus text format:
// lines "name value [timestamp]". Comments, labelled samples and lines that
// do not parse are skipped.
func parseMetrics(b []byte) map[string]float64 {
	out := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || len(fields) > 3 || !metricName(fields[0]) {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil || math.IsNaN(v) {
			continue
		}
		out[fields[0]] = v
	}
	return out
}

// metricName reports whether s is a Prometheus metric name.
func metricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}
