package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/wire"
)

// Defaults for Catchup.
const (
	DefaultBacklog     = 100_000
	DefaultBatchSize   = 1000 // the most POST /v1/publish/batch takes
	DefaultConcurrency = 4
	DefaultCatchupSize = 64
)

// CatchupConfig configures Catchup. Zero fields take their defaults.
type CatchupConfig struct {
	Target
	Backlog     int // entries published before the device connects
	Size        int // bytes of entry data
	BatchSize   int // entries per batch request, at most 1000
	Concurrency int // batch requests in flight
}

// CatchupReport is the outcome of Catchup.
type CatchupReport struct {
	Scenario  string `json:"scenario"`
	RunID     string `json:"run_id"`
	Biz       string `json:"biz"`
	Transport string `json:"transport"`
	Encoding  string `json:"encoding"`
	Backlog   int    `json:"backlog"`
	Size      int    `json:"size"`
	// Published is how many backlog entries were published with success,
	// PublishRate how many per second of the setup.
	Published      int64   `json:"published"`
	PublishSeconds float64 `json:"publish_s"`
	PublishRate    float64 `json:"publish_rate"`
	// WelcomeMillis is from sending the hello to reading the welcome.
	WelcomeMillis float64 `json:"welcome_ms"`
	// CatchupSeconds is from sending the hello to reading the last entry;
	// CatchupRate is the entries received per second of it.
	CatchupSeconds float64  `json:"catchup_s"`
	CatchupRate    float64  `json:"catchup_rate"`
	Received       int64    `json:"received"`
	Pushes         int64    `json:"pushes"`
	Delivery       Delivery `json:"delivery"`
	// SetupCPU covers the publishing, CatchupCPU the catch-up.
	SetupCPU   CPU    `json:"setup_cpu"`
	CatchupCPU CPU    `json:"catchup_cpu"`
	Errors     Errors `json:"errors"`
}

// Failures implements Report.
func (r *CatchupReport) Failures() int64 { return r.Errors.Total() + r.Delivery.Failures() }

// WriteText implements Report.
func (r *CatchupReport) WriteText(w io.Writer) error {
	t := newTextReport(w, r.Errors, &r.Delivery)
	t.head("catchup: a backlog of %d entries of %d B, one device (%s/%s), biz %s, run %s",
		r.Backlog, r.Size, r.Transport, r.Encoding, r.Biz, r.RunID)
	t.figure("setup publish", "%d entries in %.2fs, %s", r.Published, r.PublishSeconds, perSecond(r.PublishRate))
	t.figure("welcome", "%s after the hello", ms(r.WelcomeMillis))
	t.figure("catch-up", "%d entries in %.3fs, %s (%d pushes)", r.Received, r.CatchupSeconds, perSecond(r.CatchupRate), r.Pushes)
	t.info("delivery", "%s", r.Delivery)
	t.cpu("setup cpu", r.SetupCPU, r.Published, "entry")
	t.cpu("catch-up cpu", r.CatchupCPU, r.Received, "entry")
	t.errors(r.Errors)
	return t.err
}

// Catchup publishes Backlog entries to one user channel through POST
// /v1/publish/batch, then connects one device with no sync point and times
// how long it takes to receive all of them, checking each arrives exactly
// once and in order.
func Catchup(ctx context.Context, cfg CatchupConfig) (*CatchupReport, error) {
	if cfg.Backlog <= 0 {
		cfg.Backlog = DefaultBacklog
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultCatchupSize
	}
	if cfg.BatchSize <= 0 || cfg.BatchSize > DefaultBatchSize {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Biz == "" {
		cfg.Biz = DefaultBiz
	}
	r, err := startRunner(ctx, "catchup", cfg.Target, true, syncpoint.NewBiz(cfg.Biz, syncpoint.TargetUser))
	if err != nil {
		return nil, err
	}
	defer r.close()
	biz := cfg.Biz
	user := r.userID("catchup")
	name := biz + "/user:" + user
	users := []string{user}
	rep := &CatchupReport{
		Scenario: "catchup", RunID: r.t.RunID, Biz: biz, Transport: r.t.Transport, Encoding: r.t.Encoding,
		Backlog: cfg.Backlog, Size: cfg.Size,
	}

	var pub pubLog
	var track seqTrack
	var pushes atomic.Int64
	phase := "publishing"
	var phaseMu sync.Mutex
	stopProgress := startProgress(r.t.Progress, "catchup", func() string {
		phaseMu.Lock()
		p := phase
		phaseMu.Unlock()
		return fmt.Sprintf("%s  published %d/%d  received %d  errors %d", p, pub.n.Load(), cfg.Backlog, track.distinct.Load(), r.errs.total())
	})
	defer stopProgress()

	// The setup: batches taken in order by a few concurrent publishers.
	cpu := r.markCPU(ctx)
	start := r.clock.Now()
	batches := (cfg.Backlog + cfg.BatchSize - 1) / cfg.BatchSize
	var next atomic.Int64
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			var b stamped
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= batches {
					return
				}
				from, to := j*cfg.BatchSize, min((j+1)*cfg.BatchSize, cfg.Backlog)
				for k := from; k < to; k++ {
					b.add(apiclient.PublishRequest{Biz: biz, Users: users}, int64(r.now()), uint64(k), cfg.Size)
				}
				res, err := r.publishBatch(ctx, int64(j), b.batch(), to-from)
				if err != nil {
					if ctx.Err() == nil {
						r.errs.add(errPublish, int64(to-from), err)
					}
					continue
				}
				for _, it := range res {
					if err := checkResult(it); err != nil {
						r.errs.add(errPublish, 1, fmt.Errorf("publish batch item: %w", err))
						continue
					}
					pub.add(it.Entries[0].Seq)
				}
			}
		})
	}
	wg.Wait()
	pubTook := r.clock.Now().Sub(start)
	rep.SetupCPU = r.since(ctx, cpu)
	rep.Published = pub.n.Load()
	rep.PublishSeconds = seconds(pubTook)
	rep.PublishRate = rate(rep.Published, pubTook)
	if ctx.Err() != nil {
		rep.Errors = r.errs.snapshot()
		return rep, fmt.Errorf("catchup: %w", ctx.Err())
	}

	phaseMu.Lock()
	phase = "catching up"
	phaseMu.Unlock()
	want := rep.Published
	var lastAt atomic.Int64
	doneCh := make(chan struct{})
	var doneOnce sync.Once
	if want == 0 {
		doneOnce.Do(func() { close(doneCh) })
	}
	devs := make([]*device, 1)
	cpu = r.markCPU(ctx)
	dctx, cancel := context.WithTimeout(ctx, r.t.Timeout)
	conn, err := r.dial(dctx, 0)
	cancel()
	if err != nil {
		r.errs.add(errConnect, 1, fmt.Errorf("dial: %w", err))
	} else {
		d := &device{r: r, id: r.deviceID("catchup"), user: user, conn: conn}
		d.onPush = func(d *device, p *wire.Push, at time.Duration) {
			pushes.Add(1)
			for i := range p.Entries {
				e := &p.Entries[i]
				if e.Channel != name {
					r.errs.add(errProtocol, 1, fmt.Errorf("entry of channel %s, which the device did not subscribe to", e.Channel))
					continue
				}
				if track.add(e.Seq) && track.distinct.Load() >= want {
					lastAt.Store(int64(at))
					doneOnce.Do(func() { close(doneCh) })
				}
			}
		}
		tok, err := r.token(user)
		if err != nil {
			conn.Close(wire.CloseNormal, "")
			return nil, fmt.Errorf("catchup: %w", err)
		}
		hello := r.now()
		w, err := d.handshake(ctx, helloFor(tok, d.id, []string{biz}, nil))
		if err == nil {
			err = expectChannel(w, name)
		}
		if err != nil {
			r.errs.add(errConnect, 1, err)
			conn.Close(wire.CloseNormal, "")
		} else {
			rep.WelcomeMillis = float64(r.now()-hello) / float64(time.Millisecond)
			d.start(ctx)
			devs[0] = d
			// Wait while entries keep coming; a stall of Timeout ends it.
			last, lastMove := track.distinct.Load(), r.clock.Now()
		wait:
			for {
				select {
				case <-doneCh:
					break wait
				case <-ctx.Done():
					break wait
				case <-time.After(10 * time.Millisecond):
				}
				if cur := track.distinct.Load(); cur != last {
					last, lastMove = cur, r.clock.Now()
				} else if r.clock.Now().Sub(lastMove) > r.t.Timeout || !d.alive() {
					break wait
				}
			}
			if at := lastAt.Load(); at > 0 {
				rep.CatchupSeconds = seconds(time.Duration(at) - hello)
			}
		}
	}
	rep.CatchupCPU = r.since(ctx, cpu)
	stopProgress()
	closeAll(devs)
	if devs[0] != nil {
		rep.Delivery = track.tally(pub.list())
	} else {
		rep.Delivery = Delivery{Expected: want} // the connect error says why
	}
	rep.Received = rep.Delivery.Received
	rep.Pushes = pushes.Load()
	if rep.CatchupSeconds > 0 {
		rep.CatchupRate = float64(rep.Received) / rep.CatchupSeconds
	}
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("catchup: %w", ctx.Err())
	}
	return rep, nil
}
