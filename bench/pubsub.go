package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Defaults for PubSub: the shape other pub/sub servers are benchmarked
// with (NATS's bench, Centrifugo's bench_client).
const (
	DefaultPubSubDevices    = 100
	DefaultPubSubPublishers = 2
	DefaultPubSubEntries    = 5000
)

// PubSubConfig configures PubSub. Zero fields take their defaults.
type PubSubConfig struct {
	Target
	Devices int // devices subscribed to the global biz
	// Publishers publish concurrently, each one publish at a time: the
	// next is sent when the previous one was answered.
	Publishers int
	// Entries is the total over every publisher, each taking the next
	// entry as it is free, as NATS's bench counts its -n.
	Entries int
	Size    int // bytes of entry data
	// Drain is how long to wait after the last publish for deliveries
	// still on their way; what has not arrived by then is lost.
	Drain time.Duration
}

// PubSubReport is the outcome of PubSub.
type PubSubReport struct {
	GlobalRun
	Publishers int   `json:"publishers"`
	Entries    int   `json:"entries"`
	Size       int   `json:"size"`
	Published  int64 `json:"published"` // entries published with success
	// PublishSeconds and PublishRate are the publishing phase's length
	// and its entries per second.
	PublishSeconds float64     `json:"publish_s"`
	PublishRate    float64     `json:"publish_rate"`
	PublishLatency Percentiles `json:"publish_latency"` // HTTP request to answer
	// Delivered counts the first copies received over every device, and
	// DeliveredRate those per second over RunSeconds: from the first
	// publish request to the last receipt.
	Delivered     int64   `json:"delivered"`
	DeliveredRate float64 `json:"delivered_per_s"`
	RunSeconds    float64 `json:"run_s"`
	// Latency is publish request sent to entry received, over every device
	// and entry.
	Latency Percentiles `json:"latency"`
	// Complete counts the entries that reached every connected device;
	// LastDevice is, for those, the time until the last device had it.
	Complete   int64       `json:"complete"`
	LastDevice Percentiles `json:"last_device"`
	Delivery   Delivery    `json:"delivery"`
	// CPU covers the publishing and the drain.
	CPU    CPU    `json:"cpu"`
	Errors Errors `json:"errors"`
}

// Failures implements Report.
func (r *PubSubReport) Failures() int64 { return r.Errors.Total() + r.Delivery.Failures() }

// WriteText implements Report.
func (r *PubSubReport) WriteText(w io.Writer) error {
	t := newTextReport(w, r.Errors, &r.Delivery)
	t.head("pubsub: %d publishers, %d entries of %d B in all, to %s on one global channel, biz %s, run %s",
		r.Publishers, r.Entries, r.Size, r.devicesText(), r.Biz, r.RunID)
	r.writeConnected(t)
	t.figure("published", "%d entries in %s, %s; %d reached every device", r.Published, durText(r.PublishSeconds), perSecond(r.PublishRate), r.Complete)
	t.figure("publish latency", "%s", r.PublishLatency)
	t.figure("delivered", "%d deliveries in %s, %s", r.Delivered, durText(r.RunSeconds), perSecond(r.DeliveredRate))
	t.figure("latency", "%s", r.Latency)
	t.figure("last device", "%s", r.LastDevice)
	t.info("delivery", "%s", r.Delivery)
	t.cpu("cpu", r.CPU, r.Delivered, "delivered entry")
	t.errors(r.Errors)
	return t.err
}

// PubSub connects Devices devices to a global biz, and has Publishers
// publishers send Entries entries to it between them, each publishing the
// next entry as soon as its previous publish was answered. It waits up to
// Drain for every device to have every entry, and reports the deliveries
// per second, the publish-to-device latency, the server's CPU time per
// delivered entry, and per device whether every entry arrived exactly once
// and in order. The devices start at the channel's head, so entries of
// earlier runs are not sent.
func PubSub(ctx context.Context, cfg PubSubConfig) (*PubSubReport, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = DefaultPubSubDevices
	}
	if cfg.Publishers <= 0 {
		cfg.Publishers = DefaultPubSubPublishers
	}
	if cfg.Entries <= 0 {
		cfg.Entries = DefaultPubSubEntries
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	g, err := startGlobal(ctx, "pubsub", cfg.Target, cfg.Devices, cfg.Entries)
	if err != nil {
		return nil, err
	}
	r := g.r
	defer r.close()
	rep := &PubSubReport{Publishers: cfg.Publishers, Entries: cfg.Entries, Size: cfg.Size}
	stopProgress := g.startProgress()
	defer stopProgress()
	rep.GlobalRun = g.connect(ctx)

	pubLat := newRecorder()
	var s spread
	cpu := r.markCPU(ctx)
	if rep.Connected > 0 {
		start := r.clock.Now()
		g.publishAll(ctx, cfg.Publishers, 0, cfg.Size, pubLat)
		took := r.clock.Now().Sub(start)
		rep.PublishSeconds = seconds(took)
		rep.PublishRate = rate(g.published.Load(), took)
		g.drain(ctx, cfg.Drain)
		s = g.spread()
	}
	rep.CPU = r.since(ctx, cpu)
	stopProgress()
	rep.Delivery = g.finish()
	rep.Published = g.published.Load()
	rep.PublishLatency = pubLat.percentiles()
	rep.Delivered = rep.Delivery.Received
	rep.RunSeconds = seconds(s.took)
	rep.DeliveredRate = rate(rep.Delivered, s.took)
	rep.Latency = g.perDev.percentiles()
	rep.Complete, rep.LastDevice = s.complete, s.lastDevice
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("pubsub: %w", ctx.Err())
	}
	return rep, nil
}
