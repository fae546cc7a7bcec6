package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/wire"
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
	Entries int // global entries published, one at a time
	// Interval is the pause between one entry reaching every device and
	// the next publish.
	Interval time.Duration
	Size     int // bytes of entry data
}

// FanoutReport is the outcome of Fanout.
type FanoutReport struct {
	Scenario       string  `json:"scenario"`
	RunID          string  `json:"run_id"`
	Biz            string  `json:"biz"`
	Transport      string  `json:"transport"`
	Encoding       string  `json:"encoding"`
	Devices        int     `json:"devices"`
	CrossNode      bool    `json:"cross_node,omitempty"`
	Connected      int     `json:"connected"`
	ConnectSeconds float64 `json:"connect_s"`
	Entries        int     `json:"entries"`
	Size           int     `json:"size"`
	Published      int64   `json:"published"`
	// Complete counts the entries that reached every connected device
	// within the timeout; LastDevice covers only those.
	Complete int64 `json:"complete"`
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
	t.head("fanout: %d devices (%s/%s)%s, %d global entries of %d B, biz %s, run %s",
		r.Devices, r.Transport, r.Encoding, crossNodeText(r.CrossNode), r.Entries, r.Size, r.Biz, r.RunID)
	t.info("connected", "%d of %d in %.2fs", r.Connected, r.Devices, r.ConnectSeconds)
	t.info("published", "%d entries; %d reached every device", r.Published, r.Complete)
	t.figure("last device", "%s", r.LastDevice)
	t.figure("per device", "%s", r.PerDevice)
	t.info("delivery", "%s", r.Delivery)
	t.cpu("cpu", r.CPU, r.Delivery.Received, "delivery")
	t.errors(errs)
	return t.err
}

// fanEntry is how far one published entry has spread.
type fanEntry struct {
	count atomic.Int64 // devices that have it
	last  atomic.Int64 // the latest receipt, as time since the run's origin
}

// Fanout connects Devices devices to a global biz and publishes Entries
// entries to it, one at a time: each is published once the previous one
// reached every device and Interval passed. It reports how long each entry
// took to reach the last device, and every device's latency. The devices
// start at the channel's head, so entries of earlier runs are not sent.
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
	if cfg.Biz == "" {
		cfg.Biz = DefaultGlobalBiz
	}
	r, err := startRunner(ctx, "fanout", cfg.Target, true, syncpoint.NewBiz(cfg.Biz, syncpoint.TargetGlobal))
	if err != nil {
		return nil, err
	}
	defer r.close()
	biz := cfg.Biz
	ch := syncpoint.Channel{Biz: biz, Target: syncpoint.GlobalTarget()}
	name := ch.String()
	head, err := r.channelHead(ctx, ch)
	if err != nil {
		return nil, fmt.Errorf("fanout: %w", err)
	}
	var positions []wire.Position
	if head.Seq > 0 {
		positions = []wire.Position{{Channel: name, Epoch: head.Epoch, Seq: head.Seq}}
	}

	n, m := cfg.Devices, cfg.Entries
	rep := &FanoutReport{
		Scenario: "fanout", RunID: r.t.RunID, Biz: biz, Transport: r.t.Transport, Encoding: r.t.Encoding,
		Devices: n, CrossNode: r.t.CrossNode, Entries: m, Size: cfg.Size,
	}
	tracks := make([]seqTrack, n)
	for i := range tracks {
		tracks[i].after = head.Seq
	}
	entries := make([]fanEntry, m)
	perDev, lastDev := newRecorder(), newRecorder()
	onPush := func(d *device, p *wire.Push, at time.Duration) {
		for i := range p.Entries {
			e := &p.Entries[i]
			if e.Channel != name {
				r.errs.add(errProtocol, 1, fmt.Errorf("device %s: entry of channel %s, which it did not subscribe to", d.id, e.Channel))
				continue
			}
			if !tracks[d.idx].add(e.Seq) {
				continue
			}
			t, k, ok := parseStamp(e.Data)
			if !ok || k >= uint64(m) {
				continue // not ours: another publisher shares the channel
			}
			perDev.record(d.idx, at-time.Duration(t))
			st := &entries[k]
			for {
				cur := st.last.Load()
				if int64(at) <= cur || st.last.CompareAndSwap(cur, int64(at)) {
					break
				}
			}
			st.count.Add(1)
		}
	}

	var conns, published atomic.Int64
	stopProgress := startProgress(r.t.Progress, "fanout", func() string {
		return fmt.Sprintf("connected %d/%d  published %d/%d  errors %d", conns.Load(), n, published.Load(), m, r.errs.total())
	})
	defer stopProgress()
	t0 := r.clock.Now()
	devs := r.connectAll(ctx, n, func(i int) devSpec {
		return devSpec{user: r.userID(strconv.Itoa(i)), id: r.deviceID(strconv.Itoa(i)), bizzes: []string{biz}, positions: positions}
	}, func(d *device, w *wire.Welcome) error {
		d.onPush = onPush
		return expectChannel(w, name)
	}, nil, &conns)
	rep.ConnectSeconds = seconds(r.clock.Now().Sub(t0))
	rep.Connected = connected(devs)

	var pub pubLog
	var b stamped
	cpu := r.markCPU(ctx)
	for k := 0; k < m && rep.Connected > 0 && ctx.Err() == nil; k++ {
		sent := r.now()
		b.add(apiclient.PublishRequest{Biz: biz, Global: true}, int64(sent), uint64(k), cfg.Size)
		res, err := r.publish(ctx, int64(k), b.one())
		if err != nil {
			if ctx.Err() == nil {
				r.errs.add(errPublish, 1, err)
			}
			sleepFor(ctx, cfg.Interval)
			continue
		}
		pub.add(res[0].Seq)
		published.Add(1)
		st := &entries[k]
		deadline := r.clock.Now().Add(r.t.Timeout)
		for {
			got := st.count.Load()
			if got > 0 && got >= int64(rep.Connected)-r.downs.Load() {
				rep.Complete++
				lastDev.record(0, time.Duration(st.last.Load())-sent)
				break
			}
			if !r.clock.Now().Before(deadline) || !sleepFor(ctx, 200*time.Microsecond) {
				break
			}
		}
		sleepFor(ctx, cfg.Interval)
	}
	rep.CPU = r.since(ctx, cpu)
	stopProgress()
	closeAll(devs)

	seqs := pub.list()
	for i, d := range devs {
		if d != nil {
			rep.Delivery.add(tracks[i].tally(seqs))
		}
	}
	rep.Published = published.Load()
	rep.LastDevice = lastDev.percentiles()
	rep.PerDevice = perDev.percentiles()
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("fanout: %w", ctx.Err())
	}
	return rep, nil
}
