package bench

import (
	"context"
	"fmt"
)

// metricCPU is the server's CPU time, from its /metrics.
const metricCPU = "process_cpu_seconds_total"

// CPU is the CPU time spent during a run's measured phase by the server
// (from its process_cpu_seconds_total) and by the load generator itself;
// -1 means unknown. On a machine they share, the two compete.
type CPU struct {
	Server    float64 `json:"server_s"`
	Generator float64 `json:"generator_s"`
}

// perUnit gives both, and the server's time per unit of work.
func (c CPU) perUnit(n int64, unit string) string {
	s := "server unknown"
	if c.Server >= 0 {
		s = fmt.Sprintf("server %.2f s", c.Server)
		if n > 0 {
			s += fmt.Sprintf(" (%.1f µs per %s)", c.Server*1e6/float64(n), unit)
		}
	}
	if c.Generator >= 0 {
		s += fmt.Sprintf(", load generator %.2f s", c.Generator)
	}
	return s
}

// cpuMark is where a measured phase started.
type cpuMark struct{ server, self float64 }

// markCPU reads the CPU times at the start of a phase.
func (r *runner) markCPU(ctx context.Context) cpuMark {
	return cpuMark{server: r.serverCPU(ctx), self: processCPU()}
}

// since returns the CPU times spent since m.
func (r *runner) since(ctx context.Context, m cpuMark) CPU {
	c := CPU{Server: -1, Generator: -1}
	if s := r.serverCPU(ctx); s >= 0 && m.server >= 0 {
		c.Server = s - m.server
	}
	if s := processCPU(); s >= 0 && m.self >= 0 {
		c.Generator = s - m.self
	}
	return c
}

// serverCPU reads the server's CPU seconds, or -1 when its /metrics do not
// tell; that is not an error of the run.
func (r *runner) serverCPU(ctx context.Context) float64 {
	m, err := r.scrapeMetrics(ctx)
	if err != nil {
		return -1
	}
	v, ok := m[metricCPU]
	if !ok {
		return -1
	}
	return v
}
