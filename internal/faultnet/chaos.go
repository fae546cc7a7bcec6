package faultnet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Chaos changes the faults of some proxies in steps: each step heals them
// and injects a new set, drawn, with how long the step lasts, from Seed.
type Chaos struct {
	Proxies []*Proxy
	Seed    uint64
	// Every is the mean length of a step; 0 means one second.
	Every time.Duration
	// Kinds are the faults to draw from; nil means all of them.
	Kinds []Kind
	// Calm is the chance that a proxy gets no fault in a step.
	Calm float64
	// MaxFaults bounds the faults of one proxy in one step; 0 means 3.
	MaxFaults int
	// MaxCut bounds the bytes a Cut lets through; 0 means 64 KiB.
	MaxCut int64
}

// Step is one step of a schedule: the faults of each proxy, in the order
// of Chaos.Proxies, and how long they last.
type Step struct {
	Lasts  time.Duration
	Faults [][]Fault
}

func (s Step) String() string {
	var parts []string
	for i, fs := range s.Faults {
		var names []string
		for _, f := range fs {
			names = append(names, f.String())
		}
		if len(names) == 0 {
			names = []string{"clean"}
		}
		parts = append(parts, fmt.Sprintf("proxy %d: %s", i, strings.Join(names, ", ")))
	}
	return fmt.Sprintf("%s for %s", strings.Join(parts, "; "), s.Lasts.Round(time.Millisecond))
}

// steps returns the schedule's generator: the same seed and settings give
// the same steps.
func (c *Chaos) steps() func() Step {
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x6a09e667f3bcc909))
	every := c.Every
	if every <= 0 {
		every = time.Second
	}
	kinds := c.Kinds
	if len(kinds) == 0 {
		kinds = Kinds
	}
	most := c.MaxFaults
	if most <= 0 {
		most = 3
	}
	maxCut := c.MaxCut
	if maxCut <= 0 {
		maxCut = 64 << 10
	}
	return func() Step {
		s := Step{Lasts: every/2 + time.Duration(rng.Int64N(int64(every)))}
		halfOpen := false
		for range c.Proxies {
			var fs []Fault
			if rng.Float64() >= c.Calm {
				n := 1 + rng.IntN(most)
				for _, i := range rng.Perm(len(kinds))[:min(n, len(kinds))] {
					f := draw(rng, kinds[i], maxCut)
					halfOpen = halfOpen || f.Kind == HalfOpen
					fs = append(fs, f)
				}
			}
			s.Faults = append(s.Faults, fs)
		}
		if halfOpen {
			// Long enough, at times, for heartbeats to find the silence.
			s.Lasts += 2*every + time.Duration(rng.Int64N(3*int64(every)))
		}
		return s
	}
}

// draw picks the settings of one fault of kind k.
func draw(rng *rand.Rand, k Kind, maxCut int64) Fault {
	f := Fault{Kind: k, Upstream: rng.IntN(2) == 0, Seed: rng.Uint64()}
	ms := func(lo, hi int64) time.Duration { return time.Duration(lo+rng.Int64N(hi-lo+1)) * time.Millisecond }
	switch k {
	case Latency:
		f.Latency = ms(5, 300)
		f.Jitter = time.Duration(rng.Int64N(int64(f.Latency)/2 + 1)).Truncate(time.Millisecond)
	case Bandwidth:
		f.RateKBs = 8 + rng.Int64N(256)
	case Cut:
		f.MaxBytes = 1 + rng.Int64N(maxCut)
	case SlowClose:
		f.Delay = ms(50, 2000)
	case Reset:
		f.Delay = ms(0, 500)
	case Slice:
		f.SliceBytes = 2 + rng.IntN(128)
	}
	return f
}

// Plan returns the first n steps that Run would take.
func (c *Chaos) Plan(n int) []Step {
	next := c.steps()
	out := make([]Step, n)
	for i := range out {
		out[i] = next()
	}
	return out
}

// Run takes steps until ctx is done, then heals every proxy. It returns
// the steps taken, and the first fault a proxy refused (the steps go on
// without it); each proxy's Injected counts what went in.
func (c *Chaos) Run(ctx context.Context) ([]Step, error) {
	next := c.steps()
	var done []Step
	var first error
	defer func() {
		for _, p := range c.Proxies {
			p.Heal()
		}
	}()
	for ctx.Err() == nil {
		s := next()
		for i, p := range c.Proxies {
			if err := p.Set(s.Faults[i]); err != nil && first == nil {
				first = err
			}
		}
		done = append(done, s)
		t := time.NewTimer(s.Lasts)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return done, first
}
