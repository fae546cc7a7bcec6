package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
)

// The modes of HTTPSync.
const (
	HTTPSyncQueue   = "queue"
	HTTPSyncOneShot = "oneshot"
	HTTPSyncBoth    = "both"
)

// Defaults for HTTPSync.
const (
	DefaultHTTPSyncBacklog = 100_000
	DefaultHTTPSyncPage    = 1000 // the most a page or an answer holds
)

// HTTPSyncConfig configures HTTPSync. Zero fields take their defaults.
type HTTPSyncConfig struct {
	Target
	Devices     int    // devices, each on its own user channel
	Backlog     int    // entries published to each device's channel first
	Size        int    // bytes of entry data
	Page        int    // items per queue page and changes per one-shot answer
	Mode        string // HTTPSyncQueue, HTTPSyncOneShot or HTTPSyncBoth
	Concurrency int    // batch publishes in flight during the setup
}

// HTTPSyncReport is the outcome of HTTPSync.
type HTTPSyncReport struct {
	Scenario       string  `json:"scenario"`
	RunID          string  `json:"run_id"`
	Biz            string  `json:"biz"`
	Mode           string  `json:"mode"`
	Devices        int     `json:"devices"`
	Backlog        int     `json:"backlog"`
	Size           int     `json:"size"`
	Page           int     `json:"page"`
	Published      int64   `json:"published"`
	PublishSeconds float64 `json:"publish_s"`
	// Queue and OneShot are the drains, each by its own devices from no
	// sync point, as the mode asks.
	Queue    *HTTPSyncDrain `json:"queue,omitempty"`
	OneShot  *HTTPSyncDrain `json:"oneshot,omitempty"`
	SetupCPU CPU            `json:"setup_cpu"`
	Errors   Errors         `json:"errors"`
}

// HTTPSyncDrain is one form's drain of every device's backlog.
type HTTPSyncDrain struct {
	// Seconds is from the first request to the last answer; Rate is the
	// items received per second of it, over every device, acks included.
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate"`
	Requests int64   `json:"requests"`
	// Latency is one request's round trip: a page, an ack or an answer.
	Latency  Percentiles `json:"latency"`
	Delivery Delivery    `json:"delivery"`
	CPU      CPU         `json:"cpu"`
}

// Failures implements Report.
func (r *HTTPSyncReport) Failures() int64 {
	n := r.Errors.Total()
	for _, d := range []*HTTPSyncDrain{r.Queue, r.OneShot} {
		if d != nil {
			n += d.Delivery.Failures()
		}
	}
	return n
}

// WriteText implements Report.
func (r *HTTPSyncReport) WriteText(w io.Writer) error {
	var all Delivery
	for _, d := range []*HTTPSyncDrain{r.Queue, r.OneShot} {
		if d != nil {
			all.add(d.Delivery)
		}
	}
	t := newTextReport(w, r.Errors, &all)
	t.head("httpsync: %d devices, a backlog of %d entries of %d B each, pages of %d, %s, biz %s, run %s",
		r.Devices, r.Backlog, r.Size, r.Page, r.Mode, r.Biz, r.RunID)
	t.info("setup publish", "%d entries in %.2fs", r.Published, r.PublishSeconds)
	for _, d := range []struct {
		name string
		d    *HTTPSyncDrain
	}{{"queue", r.Queue}, {"one-shot", r.OneShot}} {
		if d.d == nil {
			continue
		}
		t.figure(d.name, "%d items in %.3fs, %s, %d requests", d.d.Delivery.Received, d.d.Seconds, perSecond(d.d.Rate), d.d.Requests)
		t.figure(d.name+" requests", "%s", d.d.Latency)
		t.info(d.name+" delivery", "%s", d.d.Delivery)
		t.cpu(d.name+" cpu", d.d.CPU, d.d.Delivery.Received, "item")
	}
	t.cpu("setup cpu", r.SetupCPU, r.Published, "entry")
	t.errors(r.Errors)
	return t.err
}

// HTTPSync publishes Backlog entries to each of Devices user channels,
// then drains them over HTTP sync: with queue sessions (pages of Page
// items, each page acked before the next, and a start after the drain that
// must find nothing), with one-shot sync (answers of Page changes, until
// more is false), or both, each by devices of its own from no sync point.
// It checks that every device got every entry once and in order, and gives
// the server's CPU time per item.
func HTTPSync(ctx context.Context, cfg HTTPSyncConfig) (*HTTPSyncReport, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = 1
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = DefaultHTTPSyncBacklog
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultCatchupSize
	}
	if cfg.Page <= 0 || cfg.Page > DefaultHTTPSyncPage {
		cfg.Page = DefaultHTTPSyncPage
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = HTTPSyncBoth
	case HTTPSyncQueue, HTTPSyncOneShot, HTTPSyncBoth:
	default:
		return nil, fmt.Errorf("httpsync: mode %q: want queue, oneshot or both", cfg.Mode)
	}
	if cfg.Biz == "" {
		cfg.Biz = DefaultBiz
	}
	r, err := startRunner(ctx, "httpsync", cfg.Target, true, syncpoint.NewBiz(cfg.Biz, syncpoint.TargetUser))
	if err != nil {
		return nil, err
	}
	defer r.close()
	n := cfg.Devices
	rep := &HTTPSyncReport{Scenario: "httpsync", RunID: r.t.RunID, Biz: cfg.Biz, Mode: cfg.Mode, Devices: n, Backlog: cfg.Backlog, Size: cfg.Size, Page: cfg.Page}
	users := make([]string, n)
	for i := range n {
		users[i] = r.userID("h" + strconv.Itoa(i))
	}
	logs := make([]pubLog, n)

	var phase atomic.Value
	phase.Store("publishing")
	var received atomic.Int64
	stopProgress := startProgress(r.t.Progress, "httpsync", func() string {
		var pub int64
		for i := range logs {
			pub += logs[i].n.Load()
		}
		return fmt.Sprintf("%s  published %d/%d  received %d  errors %d", phase.Load(), pub, n*cfg.Backlog, received.Load(), r.errs.total())
	})
	defer stopProgress()

	cpu := r.markCPU(ctx)
	start := r.clock.Now()
	r.publishBacklogs(ctx, cfg.Biz, users, cfg.Backlog, cfg.Size, cfg.Concurrency, logs)
	rep.PublishSeconds = seconds(r.clock.Now().Sub(start))
	rep.SetupCPU = r.since(ctx, cpu)
	for i := range logs {
		rep.Published += logs[i].n.Load()
	}
	if ctx.Err() != nil {
		rep.Errors = r.errs.snapshot()
		return rep, fmt.Errorf("httpsync: %w", ctx.Err())
	}

	client := &http.Client{Timeout: r.t.Timeout, Transport: &http.Transport{DialContext: r.dialContext, MaxIdleConnsPerHost: max(n, 2), DisableCompression: true}}
	defer client.CloseIdleConnections()
	if cfg.Mode != HTTPSyncOneShot {
		phase.Store("queue sessions")
		rep.Queue = r.drain(ctx, client, "q", cfg, users, logs, &received, r.drainQueue)
	}
	if cfg.Mode != HTTPSyncQueue && ctx.Err() == nil {
		phase.Store("one-shot")
		rep.OneShot = r.drain(ctx, client, "o", cfg, users, logs, &received, r.drainOneShot)
	}
	stopProgress()
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("httpsync: %w", ctx.Err())
	}
	return rep, nil
}

// publishBacklogs publishes backlog entries to each user's channel in
// batches, a few in flight, and logs each seq published with success.
func (r *runner) publishBacklogs(ctx context.Context, biz string, users []string, backlog, size, concurrency int, logs []pubLog) {
	total := len(users) * backlog
	batches := (total + DefaultBatchSize - 1) / DefaultBatchSize
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			var b stamped
			var owner []int
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= batches {
					return
				}
				from, to := j*DefaultBatchSize, min((j+1)*DefaultBatchSize, total)
				owner = owner[:0]
				for k := from; k < to; k++ {
					u := k % len(users)
					owner = append(owner, u)
					b.add(apiclient.PublishRequest{Biz: biz, Users: users[u : u+1]}, int64(r.now()), uint64(k), size)
				}
				res, err := r.publishBatch(ctx, int64(j), b.batch(), to-from)
				if err != nil {
					if ctx.Err() == nil {
						r.errs.add(errPublish, int64(to-from), err)
					}
					continue
				}
				for i, it := range res {
					if err := checkResult(it); err != nil {
						r.errs.add(errPublish, 1, fmt.Errorf("publish batch item: %w", err))
						continue
					}
					logs[owner[i]].add(it.Entries[0].Seq)
				}
			}
		})
	}
	wg.Wait()
}

// httpDevice is one device of a drain.
type httpDevice struct {
	r      *runner
	client *http.Client
	base   string // the HTTP base URL of its server
	id     string
	token  string
	lat    *recorder
	idx    int
	reqs   *atomic.Int64
}

// drainFunc drains one device's channel, handing each seq to got.
type drainFunc func(ctx context.Context, d *httpDevice, biz, channel string, page int, got func(seq uint64)) error

// drain runs f for every device at once and tallies what arrived.
func (r *runner) drain(ctx context.Context, client *http.Client, tag string, cfg HTTPSyncConfig, users []string, logs []pubLog, received *atomic.Int64, f drainFunc) *HTTPSyncDrain {
	n := len(users)
	tracks := make([]seqTrack, n)
	lat := newRecorder()
	var reqs atomic.Int64
	devs := make([]*httpDevice, n)
	for i := range n {
		tok, err := r.token(users[i])
		if err != nil {
			r.errs.add(errConnect, 1, err)
			continue
		}
		devs[i] = &httpDevice{r: r, client: client, base: r.deviceServer(i), id: r.deviceID(tag + strconv.Itoa(i)), token: tok, lat: lat, idx: i, reqs: &reqs}
	}
	cpu := r.markCPU(ctx)
	start := r.clock.Now()
	var wg sync.WaitGroup
	for i, d := range devs {
		if d == nil {
			continue
		}
		wg.Go(func() {
			ch := cfg.Biz + "/user:" + users[i]
			err := f(ctx, d, cfg.Biz, ch, cfg.Page, func(seq uint64) {
				if tracks[i].add(seq) {
					received.Add(1)
				}
			})
			if err != nil && ctx.Err() == nil {
				r.errs.add(errProtocol, 1, fmt.Errorf("device %s: %w", d.id, err))
			}
		})
	}
	wg.Wait()
	took := r.clock.Now().Sub(start)
	out := &HTTPSyncDrain{CPU: r.since(ctx, cpu), Seconds: seconds(took), Requests: reqs.Load(), Latency: lat.percentiles()}
	for i := range n {
		out.Delivery.add(tracks[i].tally(logs[i].list()))
	}
	out.Rate = rate(out.Delivery.Received, took)
	return out
}

// call sends one request as the device and reads the answer.
func (d *httpDevice) call(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("X-Device-Id", d.id)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	sent := d.r.now()
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	d.reqs.Add(1)
	d.lat.record(d.idx, d.r.now()-sent)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, b, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode, b, nil
}

// drainQueue drains a channel with queue sessions: a start, pages each
// acked before the next, then a start that must find nothing left.
func (r *runner) drainQueue(ctx context.Context, d *httpDevice, biz, channel string, page int, got func(uint64)) error {
	startBody := []byte(`{"bizzes":[` + strconv.Quote(biz) + `]}`)
	status, b, err := d.call(ctx, http.MethodPost, "/v1/sync/start", startBody)
	if err != nil {
		return err
	}
	if status == http.StatusNoContent {
		return nil
	}
	var s struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &s); err != nil || s.ID == "" {
		return fmt.Errorf("start: %s", b)
	}
	path := "/v1/sync/" + s.ID + "/queue?limit=" + strconv.Itoa(page)
	// A page's ack goes while the next page is read, as a client that
	// acks as it goes would send it; one ack is in flight at a time.
	acked := make(chan error, 1)
	acked <- nil
	ackErr := func() error { err := <-acked; acked <- nil; return err }
	defer func() { <-acked }()
	for ctx.Err() == nil {
		status, b, err := d.call(ctx, http.MethodGet, path, nil)
		if err != nil {
			return err
		}
		if status == http.StatusNoContent {
			break
		}
		var p struct {
			Items []struct {
				Meta struct {
					Channel string `json:"channel"`
					Sync    struct {
						AckKey   string `json:"ack_key"`
						Revision uint64 `json:"revision"`
					} `json:"sync"`
				} `json:"meta"`
			} `json:"items"`
		}
		if err := json.Unmarshal(b, &p); err != nil || len(p.Items) == 0 {
			return fmt.Errorf("a queue page that is not one: %.200s", b)
		}
		if err := <-acked; err != nil {
			acked <- nil
			return err
		}
		var ack bytes.Buffer
		ack.WriteString(`{"ack_keys":[`)
		for i, it := range p.Items {
			if it.Meta.Channel != channel {
				return fmt.Errorf("an item of %s", it.Meta.Channel)
			}
			got(it.Meta.Sync.Revision)
			if i > 0 {
				ack.WriteByte(',')
			}
			ack.WriteString(strconv.Quote(it.Meta.Sync.AckKey))
		}
		ack.WriteString(`]}`)
		go func() {
			_, _, err := d.call(ctx, http.MethodPost, "/v1/sync/ack", ack.Bytes())
			acked <- err
		}()
	}
	if err := ackErr(); err != nil {
		return err
	}
	// Every item was acked, so nothing is left for the next session.
	status, b, err = d.call(ctx, http.MethodPost, "/v1/sync/start", startBody)
	if err != nil {
		return err
	}
	if status != http.StatusNoContent {
		return fmt.Errorf("a start after the drain found more: %.200s", b)
	}
	return nil
}

// drainOneShot drains a channel with one-shot sync, until more is false.
func (r *runner) drainOneShot(ctx context.Context, d *httpDevice, biz, channel string, page int, got func(uint64)) error {
	cursor := ""
	for ctx.Err() == nil {
		body, _ := json.Marshal(map[string]any{"last_synced": cursor, "limit": page, "entities": []any{map[string]string{"name": biz}}})
		_, b, err := d.call(ctx, http.MethodPost, "/v1/sync", body)
		if err != nil {
			return err
		}
		var a struct {
			LastSynced string `json:"last_synced"`
			More       bool   `json:"more"`
			Entities   []struct {
				Channel  string `json:"channel"`
				Messages []struct {
					Seq uint64 `json:"seq"`
				} `json:"messages"`
			} `json:"entities"`
		}
		if err := json.Unmarshal(b, &a); err != nil {
			return fmt.Errorf("an answer that is not one: %.200s", b)
		}
		for _, en := range a.Entities {
			if en.Channel != channel {
				return fmt.Errorf("an entity of %s", en.Channel)
			}
			for _, m := range en.Messages {
				got(m.Seq)
			}
		}
		cursor = a.LastSynced
		if !a.More {
			return nil
		}
	}
	return nil
}
