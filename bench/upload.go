package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// DefaultRecords is how many records one upload write carries.
const DefaultRecords = 1

// UploadConfig configures Upload. Zero fields take their defaults.
type UploadConfig struct {
	Target
	Devices  int           // devices uploading at once, one write in flight each
	Duration time.Duration // how long to upload
	Records  int           // created records per write
	Size     int           // bytes of record data
}

// UploadReport is the outcome of Upload.
type UploadReport struct {
	Scenario        string  `json:"scenario"`
	RunID           string  `json:"run_id"`
	Biz             string  `json:"biz"`
	Transport       string  `json:"transport"`
	Encoding        string  `json:"encoding"`
	Devices         int     `json:"devices"`
	Connected       int     `json:"connected"`
	Records         int     `json:"records_per_write"`
	Size            int     `json:"size"`
	DurationSeconds float64 `json:"duration_s"`
	Writes          int64   `json:"writes"`        // answered by a write_result
	Saved           int64   `json:"saved"`         // records the server saved
	SavedRate       float64 `json:"saved_per_s"`   // saved records per second
	RecordErrors    int64   `json:"record_errors"` // records refused one by one (also in errors.write)
	// Latency is from sending a write to reading its write_result, over
	// the writes that saved every record.
	Latency Percentiles `json:"latency"`
	CPU     CPU         `json:"cpu"`
	Errors  Errors      `json:"errors"`
}

// Failures implements Report.
func (r *UploadReport) Failures() int64 { return r.Errors.Total() }

// WriteText implements Report.
func (r *UploadReport) WriteText(w io.Writer) error {
	t := newTextReport(w, r.Errors, nil)
	t.head("upload: %d devices (%s/%s), writes of %d created records of %d B for %s, biz %s, run %s",
		r.Devices, r.Transport, r.Encoding, r.Records, r.Size, durText(r.DurationSeconds), r.Biz, r.RunID)
	t.info("connected", "%d of %d", r.Connected, r.Devices)
	t.figure("saved", "%d records in %d writes, %s", r.Saved, r.Writes, perSecond(r.SavedRate))
	t.figure("write latency", "%s", r.Latency)
	t.cpu("cpu", r.CPU, r.Saved, "record")
	t.errors(r.Errors)
	return t.err
}

// Upload connects Devices devices to a writable user biz; each sends write
// frames of Records created records, one at a time, waiting for each
// write_result, for Duration. It reports the records saved per second and
// the write round trip. Records the server refuses, and writes it fails or
// leaves unanswered, are errors, never figures.
func Upload(ctx context.Context, cfg UploadConfig) (*UploadReport, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = DefaultDevices
	}
	if cfg.Duration <= 0 {
		cfg.Duration = DefaultDuration
	}
	if cfg.Records <= 0 {
		cfg.Records = DefaultRecords
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	if cfg.Biz == "" {
		cfg.Biz = DefaultRecordsBiz
	}
	want := syncpoint.NewBiz(cfg.Biz, syncpoint.TargetUser)
	want.Writable = true
	want.Conflict = syncpoint.ConflictServerOrder
	r, err := startRunner(ctx, "upload", cfg.Target, true, want)
	if err != nil {
		return nil, err
	}
	defer r.close()
	biz := cfg.Biz
	n := cfg.Devices
	rep := &UploadReport{
		Scenario: "upload", RunID: r.t.RunID, Biz: biz, Transport: r.t.Transport, Encoding: r.t.Encoding,
		Devices: n, Records: cfg.Records, Size: cfg.Size, DurationSeconds: seconds(cfg.Duration),
	}
	// Record ids are 24-hex ObjectIds: the run, the device and a counter.
	h := fnv.New32a()
	h.Write([]byte(r.t.RunID))
	runTag := h.Sum32()

	var conns, writes, saved, refused atomic.Int64
	stopProgress := startProgress(r.t.Progress, "upload", func() string {
		return fmt.Sprintf("connected %d/%d  saved %d  errors %d", conns.Load(), n, saved.Load(), r.errs.total())
	})
	defer stopProgress()
	devs := r.connectAll(ctx, n, func(i int) devSpec {
		return devSpec{user: r.userID(strconv.Itoa(i)), id: r.deviceID(strconv.Itoa(i)), bizzes: []string{biz}}
	}, func(d *device, w *wire.Welcome) error {
		d.results = make(chan *wire.WriteResult, 1)
		return expectChannel(w, biz+"/user:"+d.user)
	}, nil, &conns)
	rep.Connected = connected(devs)

	lat := newRecorder()
	cpu := r.markCPU(ctx)
	start := r.clock.Now()
	end := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, d := range devs {
		if d == nil {
			continue
		}
		wg.Go(func() {
			data := appendStamp(nil, 0, uint64(d.idx), cfg.Size)
			for seq := uint32(0); ctx.Err() == nil && r.clock.Now().Before(end) && d.alive(); seq++ {
				w := &wire.Write{WriteID: fmt.Sprintf("%08x%08x%08x", runTag, uint32(d.idx), seq)}
				cs := wire.ChangeSet{Biz: biz, Created: make([]wire.Record, cfg.Records)}
				for i := range cs.Created {
					cs.Created[i] = wire.Record{ID: fmt.Sprintf("%08x%08x%08x", runTag, uint32(d.idx), seq*uint32(cfg.Records)+uint32(i)), Data: data}
				}
				w.Changes = []wire.ChangeSet{cs}
				sent := r.now()
				if d.send(ctx, &wire.Frame{Write: w}) != nil {
					return
				}
				var res *wire.WriteResult
				select {
				case res = <-d.results:
				case <-time.After(r.t.Timeout):
					r.errs.add(errWrite, int64(cfg.Records), fmt.Errorf("device %s: no write_result for %s within %s", d.id, w.WriteID, r.t.Timeout))
					return // a late answer would be taken for the next write's
				case <-ctx.Done():
					return
				}
				took := r.now() - sent
				writes.Add(1)
				switch {
				case res.WriteID != w.WriteID:
					r.errs.add(errProtocol, 1, fmt.Errorf("device %s: write_result for %q; want %q", d.id, res.WriteID, w.WriteID))
					return
				case res.Error != nil:
					r.errs.add(errWrite, int64(cfg.Records), fmt.Errorf("device %s: write refused: %w", d.id, res.Error))
					if res.Error.Code.Action() != wire.Reconnect {
						return // it would be refused the same way again
					}
					continue
				}
				saved.Add(int64(len(res.Saved)))
				if len(res.Errors) > 0 {
					refused.Add(int64(len(res.Errors)))
					e := res.Errors[0]
					r.errs.add(errWrite, int64(len(res.Errors)), fmt.Errorf("device %s: record %s refused: %s: %s", d.id, e.ID, e.Code, e.Message))
					continue
				}
				if len(res.Saved) != cfg.Records {
					r.errs.add(errProtocol, 1, fmt.Errorf("device %s: %d records saved of %d, and no errors", d.id, len(res.Saved), cfg.Records))
					continue
				}
				lat.record(d.idx, took)
			}
		})
	}
	wg.Wait()
	took := r.clock.Now().Sub(start)
	rep.CPU = r.since(ctx, cpu)
	stopProgress()
	closeAll(devs)
	rep.Writes = writes.Load()
	rep.Saved = saved.Load()
	rep.RecordErrors = refused.Load()
	rep.SavedRate = rate(rep.Saved, took)
	rep.Latency = lat.percentiles()
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("upload: %w", ctx.Err())
	}
	return rep, nil
}
