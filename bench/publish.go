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
)

// Defaults for Publish.
const (
	DefaultPublishConcurrency = 64
	DefaultChannels           = 10_000
)

// PublishConfig configures Publish. Zero fields take their defaults.
type PublishConfig struct {
	Target
	Concurrency int           // requests in flight, each on its own keep-alive connection
	Duration    time.Duration // how long to publish
	// Batch is entries per request: 0 or 1 sends single publishes to POST
	// /v1/publish, more sends batches to POST /v1/publish/batch.
	Batch    int
	Channels int // user channels written, round robin
	Size     int // bytes of entry data
}

// PublishReport is the outcome of Publish.
type PublishReport struct {
	Scenario        string      `json:"scenario"`
	RunID           string      `json:"run_id"`
	Biz             string      `json:"biz"`
	Concurrency     int         `json:"concurrency"`
	Batch           int         `json:"batch"`
	Channels        int         `json:"channels"`
	Size            int         `json:"size"`
	DurationSeconds float64     `json:"duration_s"`
	Requests        int64       `json:"requests"` // answered with success
	Entries         int64       `json:"entries"`  // durably published
	EntryRate       float64     `json:"entries_per_s"`
	RequestRate     float64     `json:"requests_per_s"`
	Latency         Percentiles `json:"latency"` // request sent to answer read
	CPU             CPU         `json:"cpu"`
	Errors          Errors      `json:"errors"`
}

// Failures implements Report.
func (r *PublishReport) Failures() int64 { return r.Errors.Total() }

// WriteText implements Report.
func (r *PublishReport) WriteText(w io.Writer) error {
	t := newTextReport(w, r.Errors, nil)
	kind := "single publishes"
	if r.Batch > 1 {
		kind = fmt.Sprintf("batches of %d", r.Batch)
	}
	t.head("publish: %s from %d clients for %s over %d channels, %d B entries, biz %s, run %s",
		kind, r.Concurrency, durText(r.DurationSeconds), r.Channels, r.Size, r.Biz, r.RunID)
	t.figure("entries", "%d durable, %s", r.Entries, perSecond(r.EntryRate))
	t.figure("requests", "%d, %s", r.Requests, perSecond(r.RequestRate))
	t.figure("latency", "%s", r.Latency)
	t.cpu("cpu", r.CPU, r.Entries, "entry")
	t.errors(r.Errors)
	return t.err
}

// Publish sends publishes from Concurrency clients as fast as the server
// answers, for Duration, and reports the durable entries per second and
// the latency of each request.
func Publish(ctx context.Context, cfg PublishConfig) (*PublishReport, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultPublishConcurrency
	}
	if cfg.Duration <= 0 {
		cfg.Duration = DefaultDuration
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1
	}
	if cfg.Batch > DefaultBatchSize {
		return nil, fmt.Errorf("publish: a batch holds at most %d entries", DefaultBatchSize)
	}
	if cfg.Channels <= 0 {
		cfg.Channels = DefaultChannels
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	if cfg.Biz == "" {
		cfg.Biz = DefaultBiz
	}
	r, err := startRunner(ctx, "publish", cfg.Target, false, syncpoint.NewBiz(cfg.Biz, syncpoint.TargetUser))
	if err != nil {
		return nil, err
	}
	defer r.close()
	biz := cfg.Biz
	rep := &PublishReport{
		Scenario: "publish", RunID: r.t.RunID, Biz: biz, Concurrency: cfg.Concurrency, Batch: cfg.Batch,
		Channels: cfg.Channels, Size: cfg.Size, DurationSeconds: seconds(cfg.Duration),
	}
	users := make([]string, cfg.Channels)
	for i := range users {
		users[i] = r.userID(strconv.Itoa(i))
	}
	item := func(k uint64) apiclient.PublishRequest {
		return apiclient.PublishRequest{Biz: biz, Users: users[k%uint64(len(users)):][:1]}
	}

	var next atomic.Uint64
	var requests, entries atomic.Int64
	lat := newRecorder()
	stopProgress := startProgress(r.t.Progress, "publish", func() string {
		return fmt.Sprintf("entries %d  requests %d  errors %d", entries.Load(), requests.Load(), r.errs.total())
	})
	defer stopProgress()
	cpu := r.markCPU(ctx)
	start := r.clock.Now()
	end := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for c := range cfg.Concurrency {
		wg.Go(func() {
			var b stamped
			for ctx.Err() == nil && r.clock.Now().Before(end) {
				k := next.Add(uint64(cfg.Batch)) - uint64(cfg.Batch)
				req := int64(k / uint64(cfg.Batch)) // requests go round robin over the servers
				sent := r.now()
				var ok int64
				if cfg.Batch == 1 {
					b.add(item(k), int64(r.now()), k, cfg.Size)
					if _, err := r.publish(ctx, req, b.one()); err != nil {
						if ctx.Err() == nil {
							r.errs.add(errPublish, 1, err)
						}
						continue
					}
					ok = 1
				} else {
					for i := range uint64(cfg.Batch) {
						b.add(item(k+i), int64(r.now()), k+i, cfg.Size)
					}
					res, err := r.publishBatch(ctx, req, b.batch(), cfg.Batch)
					if err != nil {
						if ctx.Err() == nil {
							r.errs.add(errPublish, int64(cfg.Batch), err)
						}
						continue
					}
					for _, it := range res {
						if err := checkResult(it); err != nil {
							r.errs.add(errPublish, 1, fmt.Errorf("publish batch item: %w", err))
							continue
						}
						ok++
					}
				}
				lat.record(c, r.now()-sent)
				requests.Add(1)
				entries.Add(ok)
			}
		})
	}
	wg.Wait()
	took := r.clock.Now().Sub(start)
	rep.CPU = r.since(ctx, cpu)
	stopProgress()
	rep.Requests = requests.Load()
	rep.Entries = entries.Load()
	rep.EntryRate = rate(rep.Entries, took)
	rep.RequestRate = rate(rep.Requests, took)
	rep.Latency = lat.percentiles()
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("publish: %w", ctx.Err())
	}
	return rep, nil
}
