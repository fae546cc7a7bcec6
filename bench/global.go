package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/wire"
)

// globalRun is a run's devices on one global channel, and how far each
// entry published to it has spread: what Fanout and PubSub share.
type globalRun struct {
	r         *runner
	scenario  string
	biz       string
	name      string // the channel
	positions []wire.Position
	entries   []fanEntry // by the entry's number in the run
	tracks    []seqTrack // by device
	perDev    *recorder  // publish request sent to each device's receipt
	pub       pubLog
	devs      []*device
	connected int
	conns     atomic.Int64
	published atomic.Int64
}

// GlobalRun is what the reports of Fanout and PubSub say of the run and of
// their devices on the global channel.
type GlobalRun struct {
	Scenario       string  `json:"scenario"`
	RunID          string  `json:"run_id"`
	Biz            string  `json:"biz"`
	Transport      string  `json:"transport"`
	Encoding       string  `json:"encoding"`
	Devices        int     `json:"devices"`
	CrossNode      bool    `json:"cross_node,omitempty"`
	AckInterval    float64 `json:"ack_interval_s,omitempty"` // 0: every push acked
	Connected      int     `json:"connected"`
	ConnectSeconds float64 `json:"connect_s"`
}

// devicesText is the devices' part of a report's first line.
func (h *GlobalRun) devicesText() string {
	acks := ""
	if h.AckInterval > 0 {
		acks = ", acks at most every " + durText(h.AckInterval)
	}
	return fmt.Sprintf("%d devices (%s/%s)%s%s", h.Devices, h.Transport, h.Encoding, crossNodeText(h.CrossNode), acks)
}

// writeConnected writes the report's line on connecting.
func (h *GlobalRun) writeConnected(t *textReport) {
	t.info("connected", "%d of %d in %.2fs", h.Connected, h.Devices, h.ConnectSeconds)
}

// fanEntry is how far one published entry has spread.
type fanEntry struct {
	sent  atomic.Int64 // its publish request, as time since the run's origin
	ok    atomic.Bool  // the publish was answered with success
	count atomic.Int64 // devices that have it
	last  atomic.Int64 // the latest receipt, as time since the run's origin
}

// startGlobal starts a run of m entries to t.Biz, a global biz
// (DefaultGlobalBiz when unset), for n devices; the devices will start at
// the channel's head, so entries of earlier runs are not sent.
func startGlobal(ctx context.Context, scenario string, t Target, n, m int) (*globalRun, error) {
	if t.Biz == "" {
		t.Biz = DefaultGlobalBiz
	}
	r, err := startRunner(ctx, scenario, t, true, syncpoint.NewBiz(t.Biz, syncpoint.TargetGlobal))
	if err != nil {
		return nil, err
	}
	ch := syncpoint.Channel{Biz: t.Biz, Target: syncpoint.GlobalTarget()}
	g := &globalRun{r: r, scenario: scenario, biz: t.Biz, name: ch.String(),
		entries: make([]fanEntry, m), tracks: make([]seqTrack, n), perDev: newRecorder()}
	head, err := r.channelHead(ctx, ch)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("%s: %w", scenario, err)
	}
	if head.Seq > 0 {
		g.positions = []wire.Position{{Channel: g.name, Epoch: head.Epoch, Seq: head.Seq}}
	}
	for i := range g.tracks {
		g.tracks[i].after = head.Seq
	}
	return g, nil
}

// onPush follows a device's entries: the delivery check, its latency, and
// the spread of each entry of this run.
func (g *globalRun) onPush(d *device, p *wire.Push, at time.Duration) {
	for i := range p.Entries {
		e := &p.Entries[i]
		if e.Channel != g.name {
			g.r.errs.add(errProtocol, 1, fmt.Errorf("device %s: entry of channel %s, which it did not subscribe to", d.id, e.Channel))
			continue
		}
		if !g.tracks[d.idx].add(e.Seq) {
			continue
		}
		t, k, ok := parseStamp(e.Data)
		if !ok || k >= uint64(len(g.entries)) {
			continue // not ours: another publisher shares the channel
		}
		g.perDev.record(d.idx, at-time.Duration(t))
		st := &g.entries[k]
		for {
			cur := st.last.Load()
			if int64(at) <= cur || st.last.CompareAndSwap(cur, int64(at)) {
				break
			}
		}
		st.count.Add(1)
	}
}

// startProgress shows the run's progress until the returned function is
// called.
func (g *globalRun) startProgress() (stop func()) {
	return startProgress(g.r.t.Progress, g.scenario, func() string {
		var got int64
		for i := range g.tracks {
			got += g.tracks[i].distinct.Load()
		}
		return fmt.Sprintf("connected %d/%d  published %d/%d  received %d  errors %d",
			g.conns.Load(), len(g.tracks), g.published.Load(), len(g.entries), got, g.r.errs.total())
	})
}

// connect connects every device and returns what the report says of them.
func (g *globalRun) connect(ctx context.Context) GlobalRun {
	r := g.r
	t0 := r.clock.Now()
	g.devs = r.connectAll(ctx, len(g.tracks), func(i int) devSpec {
		return devSpec{user: r.userID(strconv.Itoa(i)), id: r.deviceID(strconv.Itoa(i)), bizzes: []string{g.biz}, positions: g.positions}
	}, func(d *device, w *wire.Welcome) error {
		d.onPush = g.onPush
		return expectChannel(w, g.name)
	}, nil, &g.conns)
	g.connected = connected(g.devs)
	return GlobalRun{
		Scenario: g.scenario, RunID: r.t.RunID, Biz: g.biz, Transport: r.t.Transport, Encoding: r.t.Encoding,
		Devices: len(g.devs), CrossNode: r.t.CrossNode, AckInterval: seconds(r.t.AckInterval),
		Connected: g.connected, ConnectSeconds: seconds(r.clock.Now().Sub(t0)),
	}
}

// publish sends entry k as publish request k and returns how long the
// request took; a failure is counted, and false.
func (g *globalRun) publish(ctx context.Context, k, size int, b *stamped) (time.Duration, bool) {
	r := g.r
	sent := r.now()
	st := &g.entries[k]
	st.sent.Store(int64(sent))
	b.add(apiclient.PublishRequest{Biz: g.biz, Global: true}, int64(sent), uint64(k), size)
	res, err := r.publish(ctx, int64(k), b.one())
	took := r.now() - sent
	if err != nil {
		if ctx.Err() == nil {
			r.errs.add(errPublish, 1, err)
		}
		return took, false
	}
	g.pub.add(res[0].Seq)
	st.ok.Store(true)
	g.published.Add(1)
	return took, true
}

// publishAll publishes every entry from publishers goroutines, each taking
// the next entry number in turn. Without a rate, each sends its next
// publish as soon as its previous one was answered; with one, entry k is
// sent k/rate after the start, and publishers bounds the requests in
// flight. pubLat gets each successful request's latency.
func (g *globalRun) publishAll(ctx context.Context, publishers int, rate float64, size int, pubLat *recorder) {
	r := g.r
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	start := r.clock.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range publishers {
		wg.Go(func() {
			var b stamped
			for {
				k := int(next.Add(1) - 1)
				if k >= len(g.entries) || ctx.Err() != nil {
					return
				}
				if interval > 0 && !sleepUntil(ctx, r, start.Add(time.Duration(k)*interval)) {
					return
				}
				if took, ok := g.publish(ctx, k, size, &b); ok {
					pubLat.record(w, took)
				}
			}
		})
	}
	wg.Wait()
}

// complete reports whether entry k reached every device still connected.
func (g *globalRun) complete(k int) bool {
	st := &g.entries[k]
	got := st.count.Load()
	return st.ok.Load() && got > 0 && got >= int64(g.connected)-g.r.downs.Load()
}

// drain waits up to wait until every device still connected has every
// entry published with success.
func (g *globalRun) drain(ctx context.Context, wait time.Duration) {
	drained := func() bool {
		want := g.pub.n.Load()
		for i, d := range g.devs {
			if d != nil && d.alive() && g.tracks[i].distinct.Load() < want {
				return false
			}
		}
		return true
	}
	deadline := g.r.clock.Now().Add(wait)
	for !drained() && g.r.clock.Now().Before(deadline) && sleepFor(ctx, 5*time.Millisecond) {
	}
}

// finish closes the devices and checks what each received against what
// was published.
func (g *globalRun) finish() Delivery {
	closeAll(g.devs)
	seqs := g.pub.list()
	var d Delivery
	for i, dev := range g.devs {
		if dev != nil {
			d.add(g.tracks[i].tally(seqs))
		}
	}
	return d
}

// spread is how the entries of a run without waits spread, once drained.
type spread struct {
	complete   int64       // entries that reached every device
	lastDevice Percentiles // publish request to the last device, of those
	// took runs from the first publish request to the last receipt of any
	// entry, the span that delivery rates are taken over.
	took time.Duration
}

// spread reads the entries' receipts; call it after drain.
func (g *globalRun) spread() spread {
	var s spread
	lastDev := newRecorder()
	first, end := time.Duration(-1), time.Duration(0)
	for k := range g.entries {
		st := &g.entries[k]
		if !st.ok.Load() {
			continue
		}
		sent, last := time.Duration(st.sent.Load()), time.Duration(st.last.Load())
		if first < 0 || sent < first {
			first = sent
		}
		end = max(end, last)
		if g.complete(k) {
			s.complete++
			lastDev.record(k, last-sent)
		}
	}
	s.lastDevice = lastDev.percentiles()
	if first >= 0 && end > first {
		s.took = end - first
	}
	return s
}
