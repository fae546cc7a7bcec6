package bench

import (
	"context"
	"fmt"
	"sync"
)

// metricCPU is the server's CPU time, from its /metrics.
const metricCPU = "process_cpu_seconds_total"

// CPU is the CPU time spent during a run's measured phase by the servers
// (from their process_cpu_seconds_total) and by the load generator itself;
// -1 means unknown. On a machine they share, the two compete.
type CPU struct {
	// Server is the sum over every server, unknown when any one is.
	Server    float64 `json:"server_s"`
	Generator float64 `json:"generator_s"`
	// Servers is each server's part of Server, in the order of
	// Target.Servers; only a run against several servers has it. A server
	// listed twice is counted twice.
	Servers []ServerCPU `json:"servers,omitempty"`
}

// ServerCPU is one server's CPU time in a measured phase.
type ServerCPU struct {
	Server  string  `json:"server"`
	Seconds float64 `json:"server_s"` // -1 means unknown
}

// perUnit gives both, and the servers' time per unit of work.
func (c CPU) perUnit(n int64, unit string) string {
	s := "server unknown"
	if c.Server >= 0 {
		s = fmt.Sprintf("server %.2f s", c.Server)
		if len(c.Servers) > 1 {
			s = fmt.Sprintf("servers %.2f s", c.Server)
		}
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
type cpuMark struct {
	servers []float64
	self    float64
}

// markCPU reads the CPU times at the start of a phase.
func (r *runner) markCPU(ctx context.Context) cpuMark {
	return cpuMark{servers: r.serverCPU(ctx), self: processCPU()}
}

// since returns the CPU times spent since m.
func (r *runner) since(ctx context.Context, m cpuMark) CPU {
	now := r.serverCPU(ctx)
	c := CPU{Generator: -1}
	for i, s := range now {
		d := -1.0
		if s >= 0 && m.servers[i] >= 0 {
			d = s - m.servers[i]
		}
		if d < 0 || c.Server < 0 {
			c.Server = -1
		} else {
			c.Server += d
		}
		c.Servers = append(c.Servers, ServerCPU{Server: r.t.Servers[i], Seconds: d})
	}
	if len(c.Servers) < 2 {
		c.Servers = nil
	}
	if s := processCPU(); s >= 0 && m.self >= 0 {
		c.Generator = s - m.self
	}
	return c
}

// serverCPU reads each server's CPU seconds at once, -1 for a server whose
// /metrics do not tell; that is not an error of the run.
func (r *runner) serverCPU(ctx context.Context) []float64 {
	out := make([]float64, len(r.t.Servers))
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			out[i] = -1
			if m, err := r.scrapeMetrics(ctx, i); err == nil {
				if v, ok := m[metricCPU]; ok {
					out[i] = v
				}
			}
		})
	}
	wg.Wait()
	return out
}
