// Package history records what a fault-injection run did and saw, and
// checks it against syncpoint's promises.
//
// A run records three kinds of event: the answer to every publish (a seq,
// no answer, or a refusal), the result of every record upload, and every
// entry each device handed to its app, in the order the app saw them. At
// the end the run reads what the server holds and calls Check, which says,
// per channel and per device:
//
//   - no acknowledged entry is missing from the server, nor from any
//     device that should have it;
//   - no device applied an entry twice;
//   - within a channel, each device applied entries in ascending seq order,
//     and one publisher's acknowledged seqs rose in the order it sent them;
//   - every upload that got a result is in its channel exactly once, and
//     nothing refused is there;
//   - each device's local records equal the server's.
//
// Entries are told apart by a digest of their data (Digest), so the data
// of every publish and upload in a run must be unique: put an id in it.
package history

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Digest returns a short digest of JSON data that ignores insignificant
// white space, so the server's re-encoding of an entry gives the same one.
// Empty data (a delete) gives "".
func Digest(data []byte) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err == nil {
		data = buf.Bytes()
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// Outcome is what the sender of a publish or upload learned of it.
type Outcome uint8

// The outcomes.
const (
	// Acked: the server answered with a seq (an upload: saved). The entry
	// must be stored.
	Acked Outcome = iota + 1
	// Unknown: no answer came (a cut connection, a timeout, a 5xx). The
	// entry may be stored, but at most once.
	Unknown
	// Refused: the server refused it for good (a 4xx, a conflict). It must
	// not be stored.
	Refused
)

func (o Outcome) String() string {
	switch o {
	case Acked:
		return "acked"
	case Unknown:
		return "unknown"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Publish is one publish to one channel, as its sender saw it.
type Publish struct {
	// Writer names the sender. One writer sends one publish at a time, so
	// its acknowledged seqs in a channel must rise in the order recorded.
	Writer  string
	Channel string
	Key     string // the record key of a put or delete
	Digest  string
	Outcome Outcome
	Seq     uint64 // when Acked
}

// Upload is the result of one record change a device uploaded, or the
// lack of one. A change sent again after a cut is recorded again with its
// new result: every result given for one write_id must agree.
type Upload struct {
	Device  string
	WriteID string // "" when the client does not tell (the Go SDK)
	Channel string
	Key     string // the record id
	Op      string // "put" or "delete"
	Digest  string // of the data of a put
	Outcome Outcome
	Seq     uint64 // the saved seq; 0 when the client does not tell
	Code    string // the error code of a refusal
}

// Entry is an entry as a device applied it or the server holds it.
type Entry struct {
	Seq    uint64
	Op     string // msg, put or delete
	Key    string
	Digest string
}

// Channel is what the server holds of one channel at the end of a run.
type Channel struct {
	Name string
	// Compacted: a newer put or delete of a key removed older entries of
	// it, so their absence is no loss.
	Compacted bool
	// Trimmed: entries may have left from the front (max_backlog,
	// retention and sweeps). Those below FirstSeq are no loss.
	Trimmed  bool
	FirstSeq uint64  // the oldest seq retained; 0 means the first entry's
	Entries  []Entry // ascending seq
}

// History collects the events of one run. It is safe for concurrent use.
type History struct {
	mu        sync.Mutex
	publishes []Publish
	uploads   []Upload
	devices   map[string]*deviceLog
}

type deviceLog struct {
	channels map[string]*channelLog
	expect   map[string]bool
}

type channelLog struct {
	// segments split the applied entries at each reset: a reset drops
	// the channel, and its entries may come again.
	segments [][]Entry
	gap      uint64 // the highest first_seq of a gap notice
	records  map[string]string
	hasRecs  bool
}

// New returns an empty History.
func New() *History { return &History{devices: make(map[string]*deviceLog)} }

// Publish records a publish's answer.
func (h *History) Publish(p Publish) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.publishes = append(h.publishes, p)
}

// Upload records an upload's result.
func (h *History) Upload(u Upload) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.uploads = append(h.uploads, u)
}

func (h *History) channel(device, channel string) *channelLog {
	d := h.devices[device]
	if d == nil {
		d = &deviceLog{channels: make(map[string]*channelLog), expect: make(map[string]bool)}
		h.devices[device] = d
	}
	c := d.channels[channel]
	if c == nil {
		c = &channelLog{segments: [][]Entry{nil}}
		d.channels[channel] = c
	}
	return c
}

// Apply records that device handed e of channel to its app; calls for one
// device and channel must come in the order the app saw the entries.
func (h *History) Apply(device, channel string, e Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.channel(device, channel)
	c.segments[len(c.segments)-1] = append(c.segments[len(c.segments)-1], e)
}

// Reset records that device was told channel's history was replaced: what
// it applied before no longer counts.
func (h *History) Reset(device, channel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.channel(device, channel)
	c.segments = append(c.segments, nil)
}

// Gap records that device was told entries of channel below firstSeq are
// gone; it need not have them.
func (h *History) Gap(device, channel string, firstSeq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.channel(device, channel)
	c.gap = max(c.gap, firstSeq)
}

// Expect says that device subscribes to channels and must end up with
// every entry the server holds in them.
func (h *History) Expect(device string, channels ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range channels {
		h.channel(device, ch)
		h.devices[device].expect[ch] = true
	}
}

// Records records device's local records of channel at the end of the run,
// record key to data digest; they must equal the server's.
func (h *History) Records(device, channel string, recs map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.channel(device, channel)
	c.records, c.hasRecs = maps.Clone(recs), true
	if c.records == nil {
		c.records = map[string]string{}
	}
}

// Kind is a kind of broken promise.
type Kind string

// The kinds of problem Check reports.
const (
	// Lost: an acknowledged publish or saved upload is not on the server,
	// or a device applied an entry that the server no longer holds and
	// that was not compacted or trimmed away.
	Lost Kind = "lost"
	// Missing: a device lacks an entry the server holds in a channel it
	// subscribes to.
	Missing Kind = "missing"
	// Duplicate: a device applied one seq twice, or one content at two
	// seqs; or the server holds one publish twice.
	Duplicate Kind = "duplicate"
	// Reorder: a device applied a seq below one it applied before, or a
	// publisher's acknowledged seqs fell.
	Reorder Kind = "reorder"
	// DoubleUpload: an upload is in its channel more than once, or two
	// results of one write_id disagree.
	DoubleUpload Kind = "double upload"
	// Mismatch: the entry at a seq is not the one acknowledged or applied.
	Mismatch Kind = "mismatch"
	// Phantom: a device applied content that nobody sent.
	Phantom Kind = "phantom"
	// StoredRefused: a refused publish or upload is on the server.
	StoredRefused Kind = "refused but stored"
	// Hole: a channel that neither compacts nor trims skips a seq.
	Hole Kind = "hole"
	// Records: a device's local records differ from the server's.
	Records Kind = "records"
)

// Problem is one broken promise.
type Problem struct {
	Kind    Kind
	Device  string // "" for a problem of the server's log
	Channel string
	Seq     uint64
	Detail  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(string(p.Kind))
	b.WriteString(": ")
	if p.Device != "" {
		b.WriteString("device " + p.Device + ", ")
	}
	b.WriteString(p.Channel)
	if p.Seq > 0 {
		fmt.Fprintf(&b, " seq %d", p.Seq)
	}
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	return b.String()
}

// Report is what Check found, and how much it looked at.
type Report struct {
	Problems []Problem
	// What was checked.
	Publishes, Uploads, Applied, Stored, Devices, Channels int
	// Unanswered counts publishes and uploads whose outcome was unknown;
	// Refused those refused; Gaps and Resets the notices devices got.
	Unanswered, Refused, Gaps, Resets int
}

// OK reports whether no promise was broken.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Count returns how many problems of kind k were found.
func (r *Report) Count(k Kind) int {
	n := 0
	for _, p := range r.Problems {
		if p.Kind == k {
			n++
		}
	}
	return n
}

// Summary is one line of what was checked and found.
func (r *Report) Summary() string {
	return fmt.Sprintf("checked %d publishes and %d uploads (%d unanswered, %d refused), %d stored entries in %d channels, %d entries applied by %d devices (%d channels with a gap, %d resets): %d lost, %d missing, %d duplicated, %d reordered, %d double uploads, %d other problems",
		r.Publishes, r.Uploads, r.Unanswered, r.Refused, r.Stored, r.Channels, r.Applied, r.Devices, r.Gaps, r.Resets,
		r.Count(Lost), r.Count(Missing), r.Count(Duplicate), r.Count(Reorder), r.Count(DoubleUpload),
		len(r.Problems)-r.Count(Lost)-r.Count(Missing)-r.Count(Duplicate)-r.Count(Reorder)-r.Count(DoubleUpload))
}

func (r *Report) count(o Outcome) {
	switch o {
	case Unknown:
		r.Unanswered++
	case Refused:
		r.Refused++
	}
}

// String is the summary and the first problems; runs of one problem at
// consecutive seqs are shown as one line.
func (r *Report) String() string {
	const show = 40
	var b strings.Builder
	b.WriteString(r.Summary())
	lines := 0
	for i := 0; i < len(r.Problems); {
		p := r.Problems[i]
		j := i + 1
		for j < len(r.Problems) {
			q := r.Problems[j]
			if q.Kind != p.Kind || q.Device != p.Device || q.Channel != p.Channel || q.Detail != p.Detail || q.Seq != r.Problems[j-1].Seq+1 || p.Seq == 0 {
				break
			}
			j++
		}
		if lines == show {
			fmt.Fprintf(&b, "\n  … and %d more", len(r.Problems)-i)
			break
		}
		line := p.String()
		if j-i > 1 {
			line = strings.Replace(line, fmt.Sprintf(" seq %d", p.Seq), fmt.Sprintf(" seqs %d to %d (%d)", p.Seq, r.Problems[j-1].Seq, j-i), 1)
		}
		b.WriteString("\n  " + line)
		lines++
		i = j
	}
	return b.String()
}

// stored indexes one channel the server holds.
type stored struct {
	ch       *Channel
	bySeq    map[uint64]Entry
	byDigest map[string][]uint64
	lastKey  map[string]uint64 // newest seq of each key
	floor    uint64
}

func index(ch *Channel) *stored {
	s := &stored{ch: ch, bySeq: make(map[uint64]Entry, len(ch.Entries)), byDigest: make(map[string][]uint64), lastKey: make(map[string]uint64)}
	for _, e := range ch.Entries {
		s.bySeq[e.Seq] = e
		if e.Digest != "" {
			s.byDigest[e.Digest] = append(s.byDigest[e.Digest], e.Seq)
		}
		if e.Key != "" {
			s.lastKey[e.Key] = max(s.lastKey[e.Key], e.Seq)
		}
	}
	s.floor = ch.FirstSeq
	if s.floor == 0 && len(ch.Entries) > 0 {
		s.floor = ch.Entries[0].Seq
	}
	return s
}

// gone reports whether an entry of key at seq may have left the channel
// without a loss: replaced by a newer entry of its key, or trimmed.
func (s *stored) gone(key string, seq uint64) bool {
	if s == nil {
		return false
	}
	if s.ch.Compacted && key != "" && s.lastKey[key] > seq {
		return true
	}
	return s.ch.Trimmed && seq < s.floor
}

// Check checks the history against what the server holds at the end of the
// run. Channels absent from server hold nothing.
func (h *History) Check(server []Channel) *Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := &Report{Publishes: len(h.publishes), Uploads: len(h.uploads), Devices: len(h.devices), Channels: len(server)}
	srv := make(map[string]*stored, len(server))
	for i := range server {
		srv[server[i].Name] = index(&server[i])
		r.Stored += len(server[i].Entries)
	}
	// known holds every digest that was sent to each channel, so content
	// a device applied can be traced to a sender.
	known := make(map[string]map[string]bool)
	remember := func(ch, digest string) {
		if known[ch] == nil {
			known[ch] = make(map[string]bool)
		}
		known[ch][digest] = true
	}
	add := func(p Problem) { r.Problems = append(r.Problems, p) }

	for _, p := range h.publishes {
		r.count(p.Outcome)
	}
	for _, u := range h.uploads {
		r.count(u.Outcome)
	}
	for _, d := range h.devices {
		for _, c := range d.channels {
			r.Resets += len(c.segments) - 1
			if c.gap > 0 {
				r.Gaps++
			}
		}
	}
	for _, s := range srv {
		checkHoles(s, add)
	}
	checkPublishes(h.publishes, srv, remember, add)
	checkUploads(h.uploads, srv, remember, add)
	for _, dev := range slices.Sorted(maps.Keys(h.devices)) {
		d := h.devices[dev]
		for _, name := range slices.Sorted(maps.Keys(d.channels)) {
			r.Applied += checkDevice(dev, name, d.channels[name], d.expect[name], srv[name], known[name], add)
		}
	}
	return r
}

func checkHoles(s *stored, add func(Problem)) {
	if s.ch.Compacted || len(s.ch.Entries) == 0 {
		return
	}
	next := uint64(1)
	if s.ch.Trimmed {
		next = s.floor
	}
	for _, e := range s.ch.Entries {
		if e.Seq > next {
			add(Problem{Kind: Hole, Channel: s.ch.Name, Seq: next, Detail: fmt.Sprintf("seqs %d to %d are not stored; the next is %d", next, e.Seq-1, e.Seq)})
		}
		next = e.Seq + 1
	}
}

func checkPublishes(pubs []Publish, srv map[string]*stored, remember func(ch, digest string), add func(Problem)) {
	type wc struct{ writer, ch string }
	last := make(map[wc]uint64)
	counted := make(map[string]bool) // channel+digest already checked for duplicates
	for _, p := range pubs {
		if p.Digest != "" {
			remember(p.Channel, p.Digest)
		}
		s := srv[p.Channel]
		var copies []uint64
		if s != nil && p.Digest != "" {
			copies = s.byDigest[p.Digest]
		}
		if len(copies) > 1 && !counted[p.Channel+"\x00"+p.Digest] {
			counted[p.Channel+"\x00"+p.Digest] = true
			add(Problem{Kind: Duplicate, Channel: p.Channel, Seq: copies[1], Detail: fmt.Sprintf("one publish is stored %d times, at seqs %v", len(copies), copies)})
		}
		switch p.Outcome {
		case Acked:
			k := wc{p.Writer, p.Channel}
			if prev, ok := last[k]; ok && p.Writer != "" && p.Seq <= prev {
				add(Problem{Kind: Reorder, Channel: p.Channel, Seq: p.Seq, Detail: fmt.Sprintf("publisher %s was acked seq %d after seq %d", p.Writer, p.Seq, prev)})
			}
			last[k] = max(last[k], p.Seq)
			var e Entry
			ok := false
			if s != nil {
				e, ok = s.bySeq[p.Seq]
			}
			switch {
			case ok && e.Digest != p.Digest:
				add(Problem{Kind: Mismatch, Channel: p.Channel, Seq: p.Seq, Detail: "the stored entry is not the publish acked with this seq"})
			case !ok && !s.gone(p.Key, p.Seq):
				add(Problem{Kind: Lost, Channel: p.Channel, Seq: p.Seq, Detail: "an acked publish is not on the server"})
			}
		case Refused:
			if len(copies) > 0 {
				add(Problem{Kind: StoredRefused, Channel: p.Channel, Seq: copies[0], Detail: "a refused publish is stored"})
			}
		}
	}
}

func checkUploads(ups []Upload, srv map[string]*stored, remember func(ch, digest string), add func(Problem)) {
	type wk struct{ device, writeID, ch, key string }
	results := make(map[wk]uint64)
	counted := make(map[string]bool)
	for _, u := range ups {
		if u.Digest != "" {
			remember(u.Channel, u.Digest)
		}
		s := srv[u.Channel]
		var copies []uint64
		if s != nil && u.Digest != "" {
			copies = s.byDigest[u.Digest]
		}
		if len(copies) > 1 && !counted[u.Channel+"\x00"+u.Digest] {
			counted[u.Channel+"\x00"+u.Digest] = true
			add(Problem{Kind: DoubleUpload, Device: u.Device, Channel: u.Channel, Seq: copies[1], Detail: fmt.Sprintf("record %s is stored %d times, at seqs %v", u.Key, len(copies), copies)})
		}
		switch u.Outcome {
		case Acked:
			if u.WriteID != "" && u.Seq > 0 {
				k := wk{u.Device, u.WriteID, u.Channel, u.Key}
				if prev, ok := results[k]; ok && prev != u.Seq {
					add(Problem{Kind: DoubleUpload, Device: u.Device, Channel: u.Channel, Seq: u.Seq, Detail: fmt.Sprintf("write %s saved record %s as seq %d, and again as seq %d", u.WriteID, u.Key, prev, u.Seq)})
				}
				results[k] = u.Seq
			}
			checkSaved(u, s, copies, add)
		case Refused:
			if len(copies) > 0 {
				add(Problem{Kind: StoredRefused, Device: u.Device, Channel: u.Channel, Seq: copies[0], Detail: fmt.Sprintf("record %s was refused (%s) but is stored", u.Key, u.Code)})
			}
		}
	}
}

// checkSaved checks that a saved upload is stored: at its seq when the
// client told it, or else by its content.
func checkSaved(u Upload, s *stored, copies []uint64, add func(Problem)) {
	if u.Seq > 0 {
		var e Entry
		ok := false
		if s != nil {
			e, ok = s.bySeq[u.Seq]
		}
		switch {
		case ok && (e.Key != u.Key || e.Digest != u.Digest):
			add(Problem{Kind: Mismatch, Device: u.Device, Channel: u.Channel, Seq: u.Seq, Detail: fmt.Sprintf("the stored entry is not record %s as saved", u.Key)})
		case !ok && !s.gone(u.Key, u.Seq):
			add(Problem{Kind: Lost, Device: u.Device, Channel: u.Channel, Seq: u.Seq, Detail: fmt.Sprintf("saved record %s is not on the server", u.Key)})
		}
		return
	}
	if u.Digest == "" || len(copies) > 0 {
		return
	}
	// Without a seq, only a newer entry of the record excuses its absence.
	if s == nil || !s.ch.Compacted || s.lastKey[u.Key] == 0 {
		if s == nil || !s.ch.Trimmed {
			add(Problem{Kind: Lost, Device: u.Device, Channel: u.Channel, Detail: fmt.Sprintf("saved record %s is not on the server", u.Key)})
		}
	}
}

// checkDevice checks what one device applied of one channel, and returns
// how many entries that was.
func checkDevice(dev, name string, c *channelLog, expect bool, s *stored, known map[string]bool, add func(Problem)) int {
	n := 0
	var last map[uint64]bool
	for _, seg := range c.segments {
		n += len(seg)
		seen := make(map[uint64]bool, len(seg))
		at := make(map[string]uint64)
		var top uint64
		for _, e := range seg {
			switch {
			case seen[e.Seq]:
				add(Problem{Kind: Duplicate, Device: dev, Channel: name, Seq: e.Seq, Detail: "applied twice"})
				continue
			case e.Seq < top:
				add(Problem{Kind: Reorder, Device: dev, Channel: name, Seq: e.Seq, Detail: fmt.Sprintf("applied after seq %d", top)})
			}
			seen[e.Seq] = true
			top = max(top, e.Seq)
			if e.Digest != "" {
				if prev, ok := at[e.Digest]; ok {
					add(Problem{Kind: Duplicate, Device: dev, Channel: name, Seq: e.Seq, Detail: fmt.Sprintf("the content of seq %d applied again", prev)})
				}
				at[e.Digest] = e.Seq
			}
			checkApplied(dev, name, e, s, known, add)
		}
		last = seen
	}
	if expect && s != nil {
		for _, e := range s.ch.Entries {
			if !last[e.Seq] && e.Seq >= c.gap {
				add(Problem{Kind: Missing, Device: dev, Channel: name, Seq: e.Seq, Detail: "held by the server, never applied"})
			}
		}
	}
	if c.hasRecs {
		checkRecords(dev, name, c.records, s, add)
	}
	return n
}

// checkApplied checks one applied entry against the server and the senders.
func checkApplied(dev, name string, e Entry, s *stored, known map[string]bool, add func(Problem)) {
	if s != nil {
		if se, ok := s.bySeq[e.Seq]; ok {
			if se.Digest != e.Digest || se.Key != e.Key || se.Op != e.Op {
				add(Problem{Kind: Mismatch, Device: dev, Channel: name, Seq: e.Seq, Detail: "applied content differs from the stored entry"})
			}
			return
		}
	}
	switch {
	case e.Digest != "" && !known[e.Digest]:
		add(Problem{Kind: Phantom, Device: dev, Channel: name, Seq: e.Seq, Detail: "applied content that nobody sent"})
	case !s.gone(e.Key, e.Seq):
		add(Problem{Kind: Lost, Device: dev, Channel: name, Seq: e.Seq, Detail: "applied, but the server no longer holds it"})
	}
}

// checkRecords compares a device's local records with the server's: the
// newest put of each key, unless a delete followed.
func checkRecords(dev, name string, local map[string]string, s *stored, add func(Problem)) {
	want := make(map[string]string)
	if s != nil {
		for _, e := range s.ch.Entries {
			switch e.Op {
			case "put":
				want[e.Key] = e.Digest
			case "delete":
				delete(want, e.Key)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		got, ok := local[k]
		switch {
		case !ok:
			add(Problem{Kind: Records, Device: dev, Channel: name, Seq: s.lastKey[k], Detail: fmt.Sprintf("record %s is on the server, not on the device", k)})
		case got != want[k]:
			add(Problem{Kind: Records, Device: dev, Channel: name, Seq: s.lastKey[k], Detail: fmt.Sprintf("record %s differs from the server's", k)})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(local)) {
		if _, ok := want[k]; !ok {
			add(Problem{Kind: Records, Device: dev, Channel: name, Detail: fmt.Sprintf("record %s is on the device, not on the server", k)})
		}
	}
}
