package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Defaults for Fanout.
const (
	DefaultFanoutDevices  = 1000
	DefaultFanoutEntries  = 100
	DefaultFanoutInterval = 100 * time.Millisecond
)

// FanoutConfig configures Fanout. Zero fields take their defaults.
type FanoutConfig struct {
	Target
	Devices int // devices subscribed to the global biz
	Entries int // global entries published
	// Interval is the pause between one entry reaching every device and
	// the next publish; a pipelined run does not wait.
	Interval time.Duration
	Size     int // bytes of entry data
	// Pipeline publishes every entry without waiting for the previous one
	// to reach the devices: back to back, each publish sent when the
	// previous answer arrived, or at Rate entries per second when set.
	Pipeline bool
	Rate     float64
}

// FanoutReport is the outcome of Fanout.
type FanoutReport struct {
	GlobalRun
	Entries int `json:"entries"`
	Size    int `json:"size"`
	// Pipeline is a run that did not wait for each entry to reach every
	// device; TargetRate is its rate, 0 for back to back.
	Pipeline   bool    `json:"pipeline,omitempty"`
	TargetRate float64 `json:"target_rate,omitempty"`
	Published  int64   `json:"published"`
	// PublishRate is, in a pipelined run, the publishes per second of the
	// publishing phase.
	PublishRate float64 `json:"publish_rate,omitempty"`
	// Complete counts the entries that reached every connected device
	// within the timeout; LastDevice covers only those.
	Complete int64 `json:"complete"`
	// CompleteRate and DeliveredRate are, in a pipelined run, the entries
	// that reached every device and the deliveries per second, from the
	// first publish request to the last receipt.
	CompleteRate  float64 `json:"complete_per_s,omitempty"`
	DeliveredRate float64 `json:"delivered_per_s,omitempty"`
	// LastDevice is, per entry, the time from the publish request until
	// the last device had it.
	LastDevice Percentiles `json:"last_device"`
	// PerDevice is the time from the publish request to each device's
	// receipt, over every device and entry.
	PerDevice Percentiles `json:"per_device"`
	Delivery  Delivery    `json:"delivery"`
	// CPU covers the publishing of every entry and its spread.
	CPU    CPU    `json:"cpu"`
	Errors Errors `json:"errors"`
}

// Failures implements Report; an entry that did not reach every device in
// time counts too.
func (r *FanoutReport) Failures() int64 {
	return r.Errors.Total() + r.Delivery.Failures() + (r.Published - r.Complete)
}

// WriteText implements Report.
func (r *FanoutReport) WriteText(w io.Writer) error {
	errs := r.Errors
	if inc := r.Published - r.Complete; inc > 0 {
		errs.Samples = append(errs.Samples, fmt.Sprintf("%d entries did not reach every device in time", inc))
	}
	t := newTextReport(w, r.Errors, &r.Delivery)
	if r.Published != r.Complete && t.mark == "" {
		t.mark = "  [FAILED: some entries did not reach every device in time]"
	}
	mode := ", one at a time"
	switch {
	case r.Pipeline && r.TargetRate > 0:
		mode = ", pipelined at " + perSecond(r.TargetRate)
	case r.Pipeline:
		mode = ", pipelined back to back"
	}
	t.head("fanout: %s, %d global entries of %d B%s, biz %s, run %s", r.devicesText(), r.Entries, r.Size, mode, r.Biz, r.RunID)
	r.writeConnected(t)
	if r.Pipeline {
		t.figure("published", "%d entries, %s", r.Published, perSecond(r.PublishRate))
		t.figure("complete", "%d reached every device, %s", r.Complete, perSecond(r.CompleteRate))
		t.figure("delivered", "%d deliveries, %s", r.Delivery.Received, perSecond(r.DeliveredRate))
	} else {
		t.info("published", "%d entries; %d reached every device", r.Published, r.Complete)
	}
	t.figure("last device", "%s", r.LastDevice)
	t.figure("per device", "%s", r.PerDevice)
	t.info("delivery", "%s", r.Delivery)
	t.cpu("cpu", r.CPU, r.Delivery.Received, "delivery")
	t.errors(errs)
	return t.err
}

// Fanout connects Devices devices to a global biz and publishes Entries
// entries to it. By default it publishes one at a time: each once the
// previous one reached every device and Interval passed. With Pipeline it
// publishes them all without waiting, then waits up to Timeout for them to
// arrive. It reports how long each entry took to reach the last device,
// and every device's latency. The devices start at the channel's head, so
// entries of earlier runs are not sent.
func Fanout(ctx context.Context, cfg FanoutConfig) (*FanoutReport, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = DefaultFanoutDevices
	}
	if cfg.Entries <= 0 {
		cfg.Entries = DefaultFanoutEntries
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultFanoutInterval
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	g, err := startGlobal(ctx, "fanout", cfg.Target, cfg.Devices, cfg.Entries)
	if err != nil {
		return nil, err
	}
	r := g.r
	defer r.close()
	rep := &FanoutReport{Entries: cfg.Entries, Size: cfg.Size, Pipeline: cfg.Pipeline}
	if cfg.Pipeline {
		rep.TargetRate = max(cfg.Rate, 0)
	}
	stopProgress := g.startProgress()
	defer stopProgress()
	rep.GlobalRun = g.connect(ctx)

	cpu := r.markCPU(ctx)
	var took time.Duration
	if cfg.Pipeline {
		took = g.pipeline(ctx, rep)
	} else {
		g.oneAtATime(ctx, cfg, rep)
	}
	rep.CPU = r.since(ctx, cpu)
	stopProgress()
	rep.Delivery = g.finish()
	if cfg.Pipeline {
		rep.DeliveredRate = rate(rep.Delivery.Received, took)
	}
	rep.Published = g.published.Load()
	rep.PerDevice = g.perDev.percentiles()
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("fanout: %w", ctx.Err())
	}
	return rep, nil
}

// oneAtATime publishes each entry once the previous one reached every
// device, or the timeout passed, and Interval passed after that.
func (g *globalRun) oneAtATime(ctx context.Context, cfg FanoutConfig, rep *FanoutReport) {
	r := g.r
	lastDev := newRecorder()
	var b stamped
	for k := 0; k < cfg.Entries && rep.Connected > 0 && ctx.Err() == nil; k++ {
		if _, ok := g.publish(ctx, k, cfg.Size, &b); ok {
			st := &g.entries[k]
			deadline := r.clock.Now().Add(r.t.Timeout)
			for {
				if g.complete(k) {
					rep.Complete++
					lastDev.record(0, time.Duration(st.last.Load()-st.sent.Load()))
					break
				}
				if !r.clock.Now().Before(deadline) || !sleepFor(ctx, 200*time.Microsecond) {
					break
				}
			}
		}
		sleepFor(ctx, cfg.Interval)
	}
	rep.LastDevice = lastDev.percentiles()
}

// pipeline publishes every entry without waiting for deliveries, then
// waits up to the timeout for every device to have them all. Without a
// rate there is one publisher, back to back; with one, up to
// DefaultPublishers requests are in flight to keep the pace. It returns
// the span from the first publish to the last receipt.
func (g *globalRun) pipeline(ctx context.Context, rep *FanoutReport) time.Duration {
	if rep.Connected == 0 {
		return 0
	}
	r := g.r
	publishers := 1
	if rep.TargetRate > 0 {
		publishers = DefaultPublishers
	}
	start := r.clock.Now()
	g.publishAll(ctx, publishers, rep.TargetRate, rep.Size, newRecorder())
	rep.PublishRate = rate(g.published.Load(), r.clock.Now().Sub(start))
	g.drain(ctx, r.t.Timeout)
	s := g.spread()
	rep.Complete, rep.LastDevice = s.complete, s.lastDevice
	rep.CompleteRate = rate(s.complete, s.took)
	return s.took
}
