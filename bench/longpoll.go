package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// DefaultLongPollWait is how long the server may hold a long-poll.
const DefaultLongPollWait = 25 * time.Second

// LongPollConfig configures LongPoll. Zero fields take the defaults of
// Latency, and Wait DefaultLongPollWait.
type LongPollConfig struct {
	Target
	Paced // Devices long-poll POST /v1/sync
	// Wait is the "wait" of each request: how long the server holds it
	// when nothing is new.
	Wait time.Duration
	// Compare also connects as many socket devices (the Target's transport),
	// on channels of their own, so the two latencies come from one run
	// under one load.
	Compare bool
}

// LongPollReport is the outcome of LongPoll.
type LongPollReport struct {
	Scenario        string      `json:"scenario"`
	RunID           string      `json:"run_id"`
	Biz             string      `json:"biz"`
	Devices         int         `json:"devices"`
	CrossNode       bool        `json:"cross_node,omitempty"`
	Connected       int         `json:"connected"` // devices that drained to the head
	ConnectSeconds  float64     `json:"connect_s"`
	WaitSeconds     float64     `json:"wait_s"`
	TargetRate      float64     `json:"target_rate"`
	DurationSeconds float64     `json:"duration_s"`
	Size            int         `json:"size"`
	Published       int64       `json:"published"`
	PublishRate     float64     `json:"publish_rate"`
	PublishLatency  Percentiles `json:"publish_latency"`
	Delivered       int64       `json:"delivered"` // first copies, over every device
	DeliveredRate   float64     `json:"delivered_per_s"`
	Requests        int64       `json:"requests"` // POST /v1/sync, the drains' included
	// Latency is publish request sent to the long-poll's answer read.
	Latency Percentiles `json:"latency"`
	// With Compare: the socket devices, their transport and latency.
	Socket        string       `json:"socket,omitempty"`
	SocketDevices int          `json:"socket_devices,omitempty"`
	SocketLatency *Percentiles `json:"socket_latency,omitempty"`
	Delivery      Delivery     `json:"delivery"`
	// CPU covers the publishing and the drain.
	CPU    CPU    `json:"cpu"`
	Errors Errors `json:"errors"`
}

// Failures implements Report.
func (r *LongPollReport) Failures() int64 { return r.Errors.Total() + r.Delivery.Failures() }

// WriteText implements Report.
func (r *LongPollReport) WriteText(w io.Writer) error {
	t := newTextReport(w, r.Errors, &r.Delivery)
	t.head("longpoll: %d devices long-polling with a wait of %s%s, %s entries of %d B for %s, biz %s, run %s",
		r.Devices, durText(r.WaitSeconds), crossNodeText(r.CrossNode), perSecond(r.TargetRate), r.Size, durText(r.DurationSeconds), r.Biz, r.RunID)
	t.info("connected", "%d of %d in %.2fs", r.Connected, r.Devices, r.ConnectSeconds)
	t.figure("published", "%d entries, %s (target %s)", r.Published, perSecond(r.PublishRate), perSecond(r.TargetRate))
	t.figure("publish latency", "%s", r.PublishLatency)
	t.figure("delivered", "%d entries, %s, %d requests", r.Delivered, perSecond(r.DeliveredRate), r.Requests)
	t.figure("latency", "%s", r.Latency)
	if r.SocketLatency != nil {
		t.figure(r.Socket+" latency", "%s (%d devices beside)", *r.SocketLatency, r.SocketDevices)
	}
	t.info("delivery", "%s", r.Delivery)
	t.cpu("cpu", r.CPU, r.Delivered, "delivered entry")
	t.errors(r.Errors)
	return t.err
}

// LongPoll has Devices devices, each on its own user channel, drain their
// channels with one-shot sync and then long-poll POST /v1/sync with their
// cursor and Wait, while Rate entries per second are published round robin
// over the channels for Duration, as SSE does for event streams. It
// measures each entry from the publish request to the answer that carried
// it, checks that every device got every entry once and in order, and
// gives the server's CPU time per delivered entry.
func LongPoll(ctx context.Context, cfg LongPollConfig) (*LongPollReport, error) {
	cfg.Paced.setDefaults()
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultLongPollWait
	}
	if cfg.Biz == "" {
		cfg.Biz = DefaultBiz
	}
	r, err := startRunner(ctx, "longpoll", cfg.Target, true, syncpoint.NewBiz(cfg.Biz, syncpoint.TargetUser))
	if err != nil {
		return nil, err
	}
	defer r.close()
	biz := cfg.Biz
	n := cfg.Devices
	total := n
	if cfg.Compare {
		total = 2 * n
	}
	rep := &LongPollReport{Scenario: "longpoll", RunID: r.t.RunID, Biz: biz, Devices: n, CrossNode: r.t.CrossNode, WaitSeconds: seconds(cfg.Wait),
		TargetRate: cfg.Rate, DurationSeconds: seconds(cfg.Duration), Size: cfg.Size}

	// Channels 0..n-1 are the long-polls', n..2n-1 the sockets'.
	users := make([]string, total)
	chans := make([]string, total)
	for i := range total {
		users[i] = r.userID(strconv.Itoa(i))
		chans[i] = biz + "/user:" + users[i]
	}
	tracks := make([]seqTrack, total)
	logs := make([]pubLog, total)
	lat, sockLat, pubLat := newRecorder(), newRecorder(), newRecorder()
	onEntry := func(i int, ch string, seq uint64, data []byte, at time.Duration, rec *recorder, who string) {
		if ch != chans[i] {
			r.errs.add(errProtocol, 1, fmt.Errorf("%s %d: entry of channel %s, which it did not ask for", who, i, ch))
			return
		}
		if !tracks[i].add(seq) {
			return
		}
		t, _, ok := parseStamp(data)
		if !ok {
			r.errs.add(errProtocol, 1, fmt.Errorf("%s %d: %s seq %d: the data lost its stamp", who, i, ch, seq))
			return
		}
		rec.record(i, at-time.Duration(t))
	}

	var conns, published, reqs atomic.Int64
	stopProgress := startProgress(r.t.Progress, "longpoll", func() string {
		var got int64
		for i := range tracks {
			got += tracks[i].distinct.Load()
		}
		return fmt.Sprintf("connected %d/%d  published %d  received %d  errors %d", conns.Load(), total, published.Load(), got, r.errs.total())
	})
	defer stopProgress()

	// No client timeout: each request's bound is its wait plus Timeout.
	client := &http.Client{Transport: &http.Transport{DialContext: r.dialContext, MaxIdleConnsPerHost: max(n, 2), DisableCompression: true}}
	defer client.CloseIdleConnections()
	pollCtx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	t0 := r.clock.Now()
	polls := r.startPolls(ctx, pollCtx, client, n, biz, users, cfg.Wait, &reqs, func(i int, ch string, seq uint64, data []byte, at time.Duration) {
		onEntry(i, ch, seq, data, at, lat, "long-poll")
	}, &conns)
	rep.ConnectSeconds = seconds(r.clock.Now().Sub(t0))
	var socks []*device
	if cfg.Compare {
		rep.Socket, rep.SocketDevices = r.t.Transport+"/"+r.t.Encoding, n
		socks = r.connectAll(ctx, n, func(i int) devSpec {
			return devSpec{user: users[n+i], id: r.deviceID(strconv.Itoa(n + i)), bizzes: []string{biz}}
		}, func(d *device, w *wire.Welcome) error {
			d.onPush = func(d *device, p *wire.Push, at time.Duration) {
				for k := range p.Entries {
					e := &p.Entries[k]
					onEntry(n+d.idx, e.Channel, e.Seq, e.Data, at, sockLat, "device")
				}
			}
			return expectChannel(w, chans[n+d.idx])
		}, nil, &conns)
	}
	alive := func(i int) bool {
		if i < n {
			return polls[i] != nil && polls[i].alive()
		}
		return socks[i-n] != nil && socks[i-n].alive()
	}
	var live []int
	for i := range total {
		if alive(i) {
			live = append(live, i)
		}
	}
	for _, p := range polls {
		if p != nil {
			rep.Connected++
		}
	}
	finish := func() {
		stopPolls()
		for _, p := range polls {
			if p != nil {
				<-p.done
			}
		}
		closeAll(socks)
	}
	if rep.Connected == 0 {
		finish()
		rep.Errors = r.errs.snapshot()
		return rep, nil
	}

	o := r.publishAndDrain(ctx, cfg.Paced, biz, users, live, alive, logs, tracks, pubLat, &published, nil,
		func() { stopProgress(); finish() })
	rep.CPU, rep.Delivery, rep.Published = o.cpu, o.delivery, o.published
	rep.PublishRate, rep.PublishLatency = o.publishRate, o.publishLatency
	rep.Delivered, rep.DeliveredRate = o.delivery.Received, o.deliveredRate
	rep.Requests = reqs.Load()
	rep.Latency = lat.percentiles()
	if cfg.Compare {
		p := sockLat.percentiles()
		rep.SocketLatency = &p
	}
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("longpoll: %w", ctx.Err())
	}
	return rep, nil
}

// longPoller is one device's loop of long-polls.
type longPoller struct {
	failed atomic.Bool
	done   chan struct{}
}

func (p *longPoller) alive() bool { return !p.failed.Load() }

// pollEntry takes an entry of an answer with the time the answer was read.
type pollEntry func(i int, ch string, seq uint64, data []byte, at time.Duration)

// startPolls drains n devices' channels to the head, device i for users[i]
// and at most ConnectConcurrency at once, then starts each one's
// long-polls, which last until pollCtx ends. Failed drains are counted as
// connect errors and left nil.
func (r *runner) startPolls(ctx, pollCtx context.Context, client *http.Client, n int, biz string, users []string, wait time.Duration, reqs *atomic.Int64, onEntry pollEntry, progress *atomic.Int64) []*longPoller {
	out := make([]*longPoller, n)
	calls := newRecorder() // the drain's round trips, not reported
	sem := make(chan struct{}, r.t.ConnectConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			tok, err := r.token(users[i])
			if err != nil {
				r.errs.add(errConnect, 1, err)
				return
			}
			d := &httpDevice{r: r, client: client, base: r.deviceServer(i), id: r.deviceID(strconv.Itoa(i)), token: tok, lat: calls, idx: i, reqs: reqs}
			cursor := ""
			for more := true; more; {
				if cursor, more, err = r.poll(ctx, d, i, biz, cursor, 0, onEntry); err != nil {
					if ctx.Err() == nil {
						r.errs.add(errConnect, 1, fmt.Errorf("device %s: drain: %w", d.id, err))
					}
					return
				}
			}
			p := &longPoller{done: make(chan struct{})}
			out[i] = p
			progress.Add(1)
			go func() {
				defer close(p.done)
				for pollCtx.Err() == nil {
					cursor, _, err = r.poll(pollCtx, d, i, biz, cursor, wait, onEntry)
					if err != nil {
						if pollCtx.Err() == nil {
							p.failed.Store(true)
							r.downs.Add(1)
							r.errs.add(errClosed, 1, fmt.Errorf("device %s: long-poll: %w", d.id, err))
						}
						return
					}
				}
			}()
		})
	}
	wg.Wait()
	return out
}

// poll sends one POST /v1/sync from cursor, held up to wait when nothing
// is new, hands each message to onEntry with the time the answer was read,
// and returns the answer's cursor and more.
func (r *runner) poll(ctx context.Context, d *httpDevice, i int, biz, cursor string, wait time.Duration, onEntry pollEntry) (string, bool, error) {
	req := map[string]any{"last_synced": cursor, "limit": DefaultHTTPSyncPage, "entities": []any{map[string]string{"name": biz}}}
	if wait > 0 {
		req["wait"] = wait.String()
	}
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, wait+r.t.Timeout)
	defer cancel()
	_, b, err := d.call(ctx, http.MethodPost, "/v1/sync", body)
	at := r.now()
	if err != nil {
		return "", false, err
	}
	var a struct {
		LastSynced string `json:"last_synced"`
		More       bool   `json:"more"`
		Entities   []struct {
			Channel  string `json:"channel"`
			Messages []struct {
				Seq  uint64          `json:"seq"`
				Data json.RawMessage `json:"data"`
			} `json:"messages"`
		} `json:"entities"`
	}
	if err := json.Unmarshal(b, &a); err != nil || a.LastSynced == "" {
		return "", false, fmt.Errorf("an answer that is not one: %.200s", b)
	}
	for _, en := range a.Entities {
		for _, m := range en.Messages {
			onEntry(i, en.Channel, m.Seq, m.Data, at)
		}
	}
	return a.LastSynced, a.More, nil
}
