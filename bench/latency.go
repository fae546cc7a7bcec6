package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/wire"
)

// Defaults shared by the scenarios.
const (
	DefaultBiz        = "bench"         // user biz of latency, idle, catchup and publish
	DefaultGlobalBiz  = "bench-global"  // global biz of fanout
	DefaultRecordsBiz = "bench-records" // writable user biz of upload
	DefaultDevices    = 100
	DefaultRate       = 1000
	DefaultDuration   = 10 * time.Second
	DefaultSize       = 128
	DefaultPublishers = 64
	DefaultDrain      = 10 * time.Second
)

// LatencyConfig configures Latency. Zero fields take their defaults.
type LatencyConfig struct {
	Target
	Paced
}

// Paced is the load of the paced scenarios (Latency, SSE): devices on
// channels of their own, and publishes at a fixed rate.
type Paced struct {
	Devices  int           // connected devices, one user (and channel) each
	Rate     float64       // entries per second, over all channels
	Duration time.Duration // how long to publish
	Size     int           // bytes of entry data
	// Publishers is how many requests may be in flight at once while
	// pacing to Rate.
	Publishers int
	// Drain is how long to wait after the last publish for deliveries
	// still on their way; what has not arrived by then is lost.
	Drain time.Duration
}

func (p *Paced) setDefaults() {
	if p.Devices <= 0 {
		p.Devices = DefaultDevices
	}
	if p.Rate <= 0 {
		p.Rate = DefaultRate
	}
	if p.Duration <= 0 {
		p.Duration = DefaultDuration
	}
	if p.Size <= 0 {
		p.Size = DefaultSize
	}
	if p.Publishers <= 0 {
		p.Publishers = DefaultPublishers
	}
	if p.Drain <= 0 {
		p.Drain = DefaultDrain
	}
}

// LatencyReport is the outcome of Latency.
type LatencyReport struct {
	Scenario        string      `json:"scenario"`
	RunID           string      `json:"run_id"`
	Biz             string      `json:"biz"`
	Transport       string      `json:"transport"`
	Encoding        string      `json:"encoding"`
	Devices         int         `json:"devices"`
	CrossNode       bool        `json:"cross_node,omitempty"` // devices on other servers than the publishes
	Connected       int         `json:"connected"`
	ConnectSeconds  float64     `json:"connect_s"`
	TargetRate      float64     `json:"target_rate"`
	DurationSeconds float64     `json:"duration_s"`
	Size            int         `json:"size"`
	Published       int64       `json:"published"`       // entries published with success
	PublishRate     float64     `json:"publish_rate"`    // of those, per second of the publish phase
	PublishLatency  Percentiles `json:"publish_latency"` // HTTP request to answer
	Delivered       int64       `json:"delivered"`       // first copies received
	DeliveredRate   float64     `json:"delivered_per_s"`
	Latency         Percentiles `json:"latency"` // publish request sent to entry received
	Delivery        Delivery    `json:"delivery"`
	// CPU covers the publishing and the drain.
	CPU    CPU    `json:"cpu"`
	Errors Errors `json:"errors"`
}

// Failures implements Report.
func (r *LatencyReport) Failures() int64 { return r.Errors.Total() + r.Delivery.Failures() }

// WriteText implements Report.
func (r *LatencyReport) WriteText(w io.Writer) error {
	t := newTextReport(w, r.Errors, &r.Delivery)
	t.head("latency: %d devices (%s/%s)%s, %s entries of %d B for %s, biz %s, run %s",
		r.Devices, r.Transport, r.Encoding, crossNodeText(r.CrossNode), perSecond(r.TargetRate), r.Size, durText(r.DurationSeconds), r.Biz, r.RunID)
	t.info("connected", "%d of %d in %.2fs", r.Connected, r.Devices, r.ConnectSeconds)
	behind := ""
	if r.PublishRate < 0.95*r.TargetRate {
		behind = fmt.Sprintf("  [BEHIND: %.0f%% of the target rate; the figures are for the rate reached]", 100*r.PublishRate/r.TargetRate)
	}
	t.figure("published", "%d entries, %s (target %s)%s", r.Published, perSecond(r.PublishRate), perSecond(r.TargetRate), behind)
	t.figure("publish latency", "%s", r.PublishLatency)
	t.figure("delivered", "%d entries, %s", r.Delivered, perSecond(r.DeliveredRate))
	t.figure("latency", "%s", r.Latency)
	t.info("delivery", "%s", r.Delivery)
	t.cpu("cpu", r.CPU, r.Published, "entry")
	t.errors(r.Errors)
	return t.err
}

// Latency connects Devices devices, each on its own user channel, and
// publishes Rate entries per second through POST /v1/publish, round robin
// over the channels, for Duration. It measures how long each entry took
// from the publish request to its device, and checks that every device got
// every entry published to it exactly once and in order. An error is
// returned only when the run could not start; failures during the run are
// counted in the report.
func Latency(ctx context.Context, cfg LatencyConfig) (*LatencyReport, error) {
	cfg.Paced.setDefaults()
	if cfg.Biz == "" {
		cfg.Biz = DefaultBiz
	}
	r, err := startRunner(ctx, "latency", cfg.Target, true, syncpoint.NewBiz(cfg.Biz, syncpoint.TargetUser))
	if err != nil {
		return nil, err
	}
	defer r.close()
	biz := cfg.Biz
	n := cfg.Devices
	rep := &LatencyReport{
		Scenario: "latency", RunID: r.t.RunID, Biz: biz, Transport: r.t.Transport, Encoding: r.t.Encoding,
		Devices: n, CrossNode: r.t.CrossNode, TargetRate: cfg.Rate, DurationSeconds: seconds(cfg.Duration), Size: cfg.Size,
	}

	users := make([]string, n)
	chans := make([]string, n)
	for i := range n {
		users[i] = r.userID(strconv.Itoa(i))
		chans[i] = biz + "/user:" + users[i]
	}
	tracks := make([]seqTrack, n)
	logs := make([]pubLog, n)
	lat, pubLat := newRecorder(), newRecorder()
	onPush := func(d *device, p *wire.Push, at time.Duration) {
		for i := range p.Entries {
			e := &p.Entries[i]
			if e.Channel != chans[d.idx] {
				r.errs.add(errProtocol, 1, fmt.Errorf("device %s: entry of channel %s, which it did not subscribe to", d.id, e.Channel))
				continue
			}
			if !tracks[d.idx].add(e.Seq) {
				continue
			}
			t, _, ok := parseStamp(e.Data)
			if !ok {
				r.errs.add(errProtocol, 1, fmt.Errorf("device %s: %s seq %d: the data lost its stamp", d.id, e.Channel, e.Seq))
				continue
			}
			lat.record(d.idx, at-time.Duration(t))
		}
	}

	var conns, published atomic.Int64
	phase := "connecting"
	var phaseMu sync.Mutex
	stopProgress := startProgress(r.t.Progress, "latency", func() string {
		phaseMu.Lock()
		p := phase
		phaseMu.Unlock()
		var got int64
		for i := range tracks {
			got += tracks[i].distinct.Load()
		}
		return fmt.Sprintf("%s  connected %d/%d  published %d  received %d  errors %d", p, conns.Load(), n, published.Load(), got, r.errs.total())
	})
	defer stopProgress()
	setPhase := func(p string) { phaseMu.Lock(); phase = p; phaseMu.Unlock() }

	t0 := r.clock.Now()
	devs := r.connectAll(ctx, n, func(i int) devSpec {
		return devSpec{user: users[i], id: r.deviceID(strconv.Itoa(i)), bizzes: []string{biz}}
	}, func(d *device, w *wire.Welcome) error {
		d.onPush = onPush
		return expectChannel(w, chans[d.idx])
	}, nil, &conns)
	rep.ConnectSeconds = seconds(r.clock.Now().Sub(t0))
	var live []int
	for i, d := range devs {
		if d != nil {
			live = append(live, i)
		}
	}
	rep.Connected = len(live)
	if len(live) == 0 {
		closeAll(devs)
		rep.Errors = r.errs.snapshot()
		return rep, nil
	}

	setPhase("publishing")
	o := r.publishAndDrain(ctx, cfg.Paced, biz, users, live, func(i int) bool { return devs[i].alive() },
		logs, tracks, pubLat, &published, func() { setPhase("draining") }, func() { stopProgress(); closeAll(devs) })
	rep.CPU, rep.Delivery, rep.Published = o.cpu, o.delivery, o.published
	rep.PublishRate, rep.PublishLatency = o.publishRate, o.publishLatency
	rep.Delivered, rep.DeliveredRate = o.delivery.Received, o.deliveredRate
	rep.Latency = lat.percentiles()
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("latency: %w", ctx.Err())
	}
	return rep, nil
}

// pacing is a steady publish to user channels.
type pacing struct {
	biz        string
	users      []string // the channel of users[i] is biz/user:users[i]
	live       []int    // the indexes of users to publish to, round robin
	rate       float64  // entries per second over all of them
	duration   time.Duration
	publishers int // requests in flight at most
	size       int // bytes of data, a stamp padded
}

// publishPaced publishes as p says through POST /v1/publish. Each entry's
// data is a stamp of when its request was sent; each seq published goes
// to logs[i] of its channel, each request's latency to pubLat, and the
// count of entries to published. Failures are counted as publish errors.
func (r *runner) publishPaced(ctx context.Context, p pacing, logs []pubLog, pubLat *recorder, published *atomic.Int64) {
	interval := time.Duration(float64(time.Second) / p.rate)
	start := r.clock.Now()
	end := start.Add(p.duration)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range p.publishers {
		wg.Go(func() {
			var b stamped
			for {
				k := next.Add(1) - 1
				due := start.Add(time.Duration(k) * interval)
				if !due.Before(end) || !sleepUntil(ctx, r, due) {
					return
				}
				ch := p.live[int(k%int64(len(p.live)))]
				sent := r.now()
				b.add(apiclient.PublishRequest{Biz: p.biz, Users: p.users[ch : ch+1]}, int64(sent), uint64(k), p.size)
				res, err := r.publish(ctx, rotate(k, len(p.live)), b.one())
				took := r.now() - sent
				if err != nil {
					if ctx.Err() == nil {
						r.errs.add(errPublish, 1, err)
					}
					continue
				}
				pubLat.record(w, took)
				logs[ch].add(res[0].Seq)
				published.Add(1)
			}
		})
	}
	wg.Wait()
}

// rotate is the publish request number of entry k of a round robin over n
// channels: its channel's place in the round plus the round. Publishing k
// itself to server k mod N would, whenever N divides n, send every entry of
// a channel through one server, the one its device is on; rotated, each
// channel's entries go through every server in turn and the load stays even.
func rotate(k int64, n int) int64 { return k%int64(n) + k/int64(n) }

// sleepUntil waits until t by the runner's clock; false when ctx ended.
func sleepUntil(ctx context.Context, r *runner, t time.Time) bool {
	return sleepFor(ctx, t.Sub(r.clock.Now()))
}

// sleepFor waits d; false when ctx ended first.
func sleepFor(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pacedOutcome is what the publish-and-drain phase of a paced scenario
// measured.
type pacedOutcome struct {
	cpu            CPU
	delivery       Delivery
	published      int64
	publishRate    float64
	publishLatency Percentiles
	deliveredRate  float64
}

// publishAndDrain is the measured phase of the paced scenarios: it
// publishes to the live channels as cfg paces it, waits up to cfg.Drain
// until every live device that is still alive has every entry of its
// channel, then calls stop (which ends the progress line and closes the
// devices) and tallies each live device's delivery. draining, when set, is
// called as the wait begins.
func (r *runner) publishAndDrain(ctx context.Context, cfg Paced, biz string, users []string, live []int, alive func(int) bool,
	logs []pubLog, tracks []seqTrack, pubLat *recorder, published *atomic.Int64, draining, stop func()) pacedOutcome {
	cpu := r.markCPU(ctx)
	start := r.clock.Now()
	r.publishPaced(ctx, pacing{biz: biz, users: users, live: live, rate: cfg.Rate, duration: cfg.Duration, publishers: cfg.Publishers, size: cfg.Size},
		logs, pubLat, published)
	pubTook := r.clock.Now().Sub(start)
	if draining != nil {
		draining()
	}
	drained := func() bool {
		for _, i := range live {
			if alive(i) && tracks[i].distinct.Load() < logs[i].n.Load() {
				return false
			}
		}
		return true
	}
	deadline := r.clock.Now().Add(cfg.Drain)
	for !drained() && r.clock.Now().Before(deadline) && sleepFor(ctx, 5*time.Millisecond) {
	}
	took := r.clock.Now().Sub(start)
	out := pacedOutcome{cpu: r.since(ctx, cpu)}
	stop()
	for _, i := range live {
		out.delivery.add(tracks[i].tally(logs[i].list()))
	}
	out.published = published.Load()
	out.publishRate = rate(out.published, pubTook)
	out.publishLatency = pubLat.percentiles()
	out.deliveredRate = rate(out.delivery.Received, took)
	return out
}
