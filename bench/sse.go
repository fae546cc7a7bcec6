package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/wire"
)

// SSEConfig configures SSE. Zero fields take the defaults of Latency.
type SSEConfig struct {
	Target
	Paced // Devices are on event streams
	// Compare also connects as many socket devices (the Target's transport),
	// on channels of their own, so the two latencies come from one run
	// under one load.
	Compare bool
}

// SSEReport is the outcome of SSE.
type SSEReport struct {
	Scenario        string      `json:"scenario"`
	RunID           string      `json:"run_id"`
	Biz             string      `json:"biz"`
	Devices         int         `json:"devices"`
	CrossNode       bool        `json:"cross_node,omitempty"`
	Connected       int         `json:"connected"`
	ConnectSeconds  float64     `json:"connect_s"`
	TargetRate      float64     `json:"target_rate"`
	DurationSeconds float64     `json:"duration_s"`
	Size            int         `json:"size"`
	Published       int64       `json:"published"`
	PublishRate     float64     `json:"publish_rate"`
	PublishLatency  Percentiles `json:"publish_latency"`
	Delivered       int64       `json:"delivered"` // first copies, over every device
	DeliveredRate   float64     `json:"delivered_per_s"`
	// Latency is publish request sent to entry event read, on the streams.
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
func (r *SSEReport) Failures() int64 { return r.Errors.Total() + r.Delivery.Failures() }

// WriteText implements Report.
func (r *SSEReport) WriteText(w io.Writer) error {
	t := newTextReport(w, r.Errors, &r.Delivery)
	t.head("sse: %d devices on event streams%s, %s entries of %d B for %s, biz %s, run %s",
		r.Devices, crossNodeText(r.CrossNode), perSecond(r.TargetRate), r.Size, durText(r.DurationSeconds), r.Biz, r.RunID)
	t.info("connected", "%d of %d in %.2fs", r.Connected, r.Devices, r.ConnectSeconds)
	t.figure("published", "%d entries, %s (target %s)", r.Published, perSecond(r.PublishRate), perSecond(r.TargetRate))
	t.figure("publish latency", "%s", r.PublishLatency)
	t.figure("delivered", "%d entries, %s", r.Delivered, perSecond(r.DeliveredRate))
	t.figure("latency", "%s", r.Latency)
	if r.SocketLatency != nil {
		t.figure(r.Socket+" latency", "%s (%d devices beside)", *r.SocketLatency, r.SocketDevices)
	}
	t.info("delivery", "%s", r.Delivery)
	t.cpu("cpu", r.CPU, r.Delivered, "delivered entry")
	t.errors(r.Errors)
	return t.err
}

// SSE connects Devices devices to GET /v1/events, each on its own user
// channel, and publishes Rate entries per second round robin over the
// channels for Duration, as Latency does for sockets. It measures each
// entry from the publish request to its entry event, checks that every
// device got every entry once and in order, and gives the server's CPU
// time per delivered entry.
func SSE(ctx context.Context, cfg SSEConfig) (*SSEReport, error) {
	cfg.Paced.setDefaults()
	if cfg.Biz == "" {
		cfg.Biz = DefaultBiz
	}
	r, err := startRunner(ctx, "sse", cfg.Target, true, syncpoint.NewBiz(cfg.Biz, syncpoint.TargetUser))
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
	rep := &SSEReport{Scenario: "sse", RunID: r.t.RunID, Biz: biz, Devices: n, CrossNode: r.t.CrossNode, TargetRate: cfg.Rate, DurationSeconds: seconds(cfg.Duration), Size: cfg.Size}

	// Channels 0..n-1 are the streams', n..2n-1 the sockets'.
	users := make([]string, total)
	chans := make([]string, total)
	for i := range total {
		users[i] = r.userID(strconv.Itoa(i))
		chans[i] = biz + "/user:" + users[i]
	}
	tracks := make([]seqTrack, total)
	logs := make([]pubLog, total)
	lat, sockLat, pubLat := newRecorder(), newRecorder(), newRecorder()
	onEntry := func(i int, e *wire.Entry, at time.Duration, rec *recorder, who string) {
		if e.Channel != chans[i] {
			r.errs.add(errProtocol, 1, fmt.Errorf("%s %d: entry of channel %s, which it did not subscribe to", who, i, e.Channel))
			return
		}
		if !tracks[i].add(e.Seq) {
			return
		}
		t, _, ok := parseStamp(e.Data)
		if !ok {
			r.errs.add(errProtocol, 1, fmt.Errorf("%s %d: %s seq %d: the data lost its stamp", who, i, e.Channel, e.Seq))
			return
		}
		rec.record(i, at-time.Duration(t))
	}

	var conns, published atomic.Int64
	stopProgress := startProgress(r.t.Progress, "sse", func() string {
		var got int64
		for i := range tracks {
			got += tracks[i].distinct.Load()
		}
		return fmt.Sprintf("connected %d/%d  published %d  received %d  errors %d", conns.Load(), total, published.Load(), got, r.errs.total())
	})
	defer stopProgress()

	client := &http.Client{Transport: &http.Transport{DialContext: r.dialContext, DisableCompression: true}}
	defer client.CloseIdleConnections()
	t0 := r.clock.Now()
	streams := r.openStreams(ctx, client, n, biz, users, func(i int, e *wire.Entry, at time.Duration) { onEntry(i, e, at, lat, "stream") }, &conns)
	rep.ConnectSeconds = seconds(r.clock.Now().Sub(t0))
	var socks []*device
	if cfg.Compare {
		rep.Socket, rep.SocketDevices = r.t.Transport+"/"+r.t.Encoding, n
		socks = r.connectAll(ctx, n, func(i int) devSpec {
			return devSpec{user: users[n+i], id: r.deviceID(strconv.Itoa(n + i)), bizzes: []string{biz}}
		}, func(d *device, w *wire.Welcome) error {
			d.onPush = func(d *device, p *wire.Push, at time.Duration) {
				for k := range p.Entries {
					onEntry(n+d.idx, &p.Entries[k], at, sockLat, "device")
				}
			}
			return expectChannel(w, chans[n+d.idx])
		}, nil, &conns)
	}
	alive := func(i int) bool {
		if i < n {
			return streams[i] != nil && streams[i].alive()
		}
		return socks[i-n] != nil && socks[i-n].alive()
	}
	var live []int
	for i := range total {
		if alive(i) {
			live = append(live, i)
		}
	}
	for _, s := range streams {
		if s != nil {
			rep.Connected++
		}
	}
	if rep.Connected == 0 {
		closeAll(socks)
		rep.Errors = r.errs.snapshot()
		return rep, nil
	}

	o := r.publishAndDrain(ctx, cfg.Paced, biz, users, live, alive, logs, tracks, pubLat, &published, nil,
		func() { stopProgress(); closeStreams(streams); closeAll(socks) })
	rep.CPU, rep.Delivery, rep.Published = o.cpu, o.delivery, o.published
	rep.PublishRate, rep.PublishLatency = o.publishRate, o.publishLatency
	rep.Delivered, rep.DeliveredRate = o.delivery.Received, o.deliveredRate
	rep.Latency = lat.percentiles()
	if cfg.Compare {
		p := sockLat.percentiles()
		rep.SocketLatency = &p
	}
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("sse: %w", ctx.Err())
	}
	return rep, nil
}

// eventStream is one device's GET /v1/events and the goroutine that reads
// it.
type eventStream struct {
	id      string
	cancel  context.CancelFunc
	closing atomic.Bool
	failed  atomic.Bool
	done    chan struct{}
}

func (s *eventStream) alive() bool { return !s.failed.Load() }

func (s *eventStream) close() {
	s.closing.Store(true)
	s.cancel()
	<-s.done
}

// openStreams opens n event streams, stream i for users[i], at most
// ConnectConcurrency at once; each entry event goes to onEntry with the
// time it was read. Failed ones are counted and left nil.
func (r *runner) openStreams(ctx context.Context, client *http.Client, n int, biz string, users []string, onEntry func(i int, e *wire.Entry, at time.Duration), progress *atomic.Int64) []*eventStream {
	out := make([]*eventStream, n)
	sem := make(chan struct{}, r.t.ConnectConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s, err := r.openStream(ctx, client, i, biz, users[i], onEntry)
			if err != nil {
				if ctx.Err() == nil {
					r.errs.add(errConnect, 1, err)
				}
				return
			}
			out[i] = s
			progress.Add(1)
		})
	}
	wg.Wait()
	return out
}

func (r *runner) openStream(ctx context.Context, client *http.Client, i int, biz, user string, onEntry func(i int, e *wire.Entry, at time.Duration)) (*eventStream, error) {
	id := r.deviceID(strconv.Itoa(i))
	tok, err := r.token(user)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, r.deviceServer(i)+"/v1/events?"+url.Values{"biz": {biz}}.Encode(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Device-Id", id)
	req.Header.Set("X-Device-Platform", "bench")
	req.Header.Set("X-Device-App-Version", "1.0.0")
	// Only the time to the answer is bounded; the stream itself lasts.
	answered := time.AfterFunc(r.t.Timeout, cancel)
	resp, err := client.Do(req)
	if !answered.Stop() || err != nil {
		cancel()
		if err == nil {
			resp.Body.Close()
			err = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("stream %s: %w", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("stream %s: %w", id, apiclient.AnswerError(resp.StatusCode, b))
	}
	s := &eventStream{id: id, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		er := wire.NewEventReader(resp.Body, maxFrameBytes)
		fail := func(err error) {
			if !s.closing.Load() && ctx.Err() == nil && s.failed.CompareAndSwap(false, true) {
				r.downs.Add(1)
				r.errs.add(errClosed, 1, fmt.Errorf("stream %s: %w", id, err))
			}
		}
		for {
			ev, err := er.Next()
			if err != nil {
				fail(fmt.Errorf("ended: %w", err))
				return
			}
			at := r.now()
			switch ev.Type {
			case wire.EventEntry:
				e, err := wire.DecodeEntryJSON(ev.Data)
				if err != nil {
					r.errs.add(errProtocol, 1, fmt.Errorf("stream %s: entry: %w", id, err))
					continue
				}
				onEntry(i, &e, at)
			case wire.EventClose:
				fail(fmt.Errorf("closed by the server: %s", ev.Data))
				return
			default:
				if !ev.Comment {
					r.errs.add(errProtocol, 1, fmt.Errorf("stream %s: unexpected %s event: %s", id, ev.Type, clipText(string(ev.Data))))
				}
			}
		}
	}()
	return s, nil
}

// closeStreams closes every open stream and waits for its reader.
func closeStreams(streams []*eventStream) {
	for _, s := range streams {
		if s != nil && !s.closing.Load() {
			s.close()
		}
	}
}
