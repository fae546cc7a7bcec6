package bench

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// maxTracked bounds the seqs one channel check can follow (one byte each).
const maxTracked = 1 << 26

// Delivery is the exactly-once-in-order check over every device and channel
// of a run.
type Delivery struct {
	// Expected is how many deliveries there should have been: each entry
	// published with success, once per device that reads its channel.
	Expected int64 `json:"expected"`
	// Received is how many of those arrived.
	Received int64 `json:"received"`
	// Lost were published with success but never arrived by the end of
	// the drain period.
	Lost int64 `json:"lost"`
	// Duplicated arrived more than once (each extra copy counts), or at or
	// below the position the device started from.
	Duplicated int64 `json:"duplicated"`
	// Reordered arrived after an entry with a higher seq of the channel.
	Reordered int64 `json:"reordered"`
	// Unexpected arrived but were not published with success, say because
	// the publish answer was lost; they are not failures of delivery.
	Unexpected int64 `json:"unexpected"`
	// DevicesFailed counts the devices that lost, repeated or reordered
	// any entry.
	DevicesFailed int64 `json:"devices_failed"`
}

// Failures is the number of deliveries that broke the guarantee.
func (d Delivery) Failures() int64 { return d.Lost + d.Duplicated + d.Reordered }

// String is one line of the counts.
func (d Delivery) String() string {
	s := fmt.Sprintf("%d of %d received; lost %d, duplicated %d, reordered %d, unexpected %d",
		d.Received, d.Expected, d.Lost, d.Duplicated, d.Reordered, d.Unexpected)
	if d.DevicesFailed > 0 {
		s += fmt.Sprintf("; %d devices affected", d.DevicesFailed)
	}
	return s
}

func (d *Delivery) add(o Delivery) {
	d.Expected += o.Expected
	d.Received += o.Received
	d.Lost += o.Lost
	d.Duplicated += o.Duplicated
	d.Reordered += o.Reordered
	d.Unexpected += o.Unexpected
	d.DevicesFailed += o.DevicesFailed
}

// seqTrack follows one channel as one device receives it. add is called by
// the device's read loop only; distinct may be read at any time, the rest
// once the loop has ended.
type seqTrack struct {
	after    uint64  // the device's starting position: seqs at or below are not expected
	seen     []uint8 // seen[seq-after-1]: copies received, up to 255
	last     uint64  // the highest seq received
	distinct atomic.Int64
	dup      int64
	reorder  int64
	tooFar   int64
}

// add records seq and reports whether it is the first copy.
func (t *seqTrack) add(seq uint64) bool {
	if seq <= t.after {
		t.dup++
		return false
	}
	i := seq - t.after - 1
	if i >= maxTracked {
		t.tooFar++
		return false
	}
	if i >= uint64(len(t.seen)) {
		grown := make([]uint8, max(int(i)+1, 2*len(t.seen), 64))
		copy(grown, t.seen)
		t.seen = grown
	}
	if t.seen[i] > 0 {
		if t.seen[i] < 255 {
			t.seen[i]++
		}
		t.dup++
		return false
	}
	t.seen[i] = 1
	t.distinct.Add(1)
	if seq < t.last {
		t.reorder++
	} else {
		t.last = seq
	}
	return true
}

// has reports whether seq arrived.
func (t *seqTrack) has(seq uint64) bool {
	i := seq - t.after - 1
	return seq > t.after && i < uint64(len(t.seen)) && t.seen[i] > 0
}

// tally checks the track against the seqs published with success.
func (t *seqTrack) tally(pub []uint64) Delivery {
	d := Delivery{Expected: int64(len(pub)), Duplicated: t.dup, Reordered: t.reorder}
	for _, s := range pub {
		if t.has(s) {
			d.Received++
		}
	}
	d.Lost = d.Expected - d.Received
	d.Unexpected = t.distinct.Load() - d.Received + t.tooFar
	if d.Failures() > 0 {
		d.DevicesFailed = 1
	}
	return d
}

// pubLog is the seqs of one channel published with success.
type pubLog struct {
	mu   sync.Mutex
	seqs []uint64
	n    atomic.Int64
}

func (p *pubLog) add(seq uint64) {
	p.mu.Lock()
	p.seqs = append(p.seqs, seq)
	p.mu.Unlock()
	p.n.Add(1)
}

func (p *pubLog) list() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seqs)
}
