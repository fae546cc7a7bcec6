package chaos

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/client"
	"github.com/syncpoint/syncpoint/internal/faultnet"
	"github.com/syncpoint/syncpoint/internal/history"
	"github.com/syncpoint/syncpoint/internal/servetest"
)

// biz is a biz of a scenario's config, with what the checker must know of
// it.
type biz struct {
	name     string
	target   string // user, group or global
	compact  bool   // a newer put of a key replaces older entries
	writable bool
	// extra is more YAML settings, each on its own line.
	extra []string
	// trimmed: entries leave from the front (max_backlog, retention).
	trimmed bool
}

func configYAML(bizzes []biz) string {
	var b strings.Builder
	b.WriteString("bizzes:\n")
	for _, z := range bizzes {
		fmt.Fprintf(&b, "  - name: %s\n    target: %s\n", z.name, z.target)
		if z.compact {
			b.WriteString("    compact: true\n")
		}
		if z.writable {
			b.WriteString("    writable: true\n    conflict: reject\n")
		}
		for _, x := range z.extra {
			b.WriteString("    " + x + "\n")
		}
	}
	return b.String()
}

// env is one scenario's server, its history and its run's randomness.
type env struct {
	t    *testing.T
	seed uint64
	// rng is for the test's goroutine only; what runs elsewhere gets a
	// generator drawn from it up front, so the seed fixes every draw.
	rng    *rand.Rand
	h      *history.History
	srv    *servetest.Server
	apiKey string
	secret string
	api    *apiclient.Client // straight to the server
	bizzes map[string]biz

	mu       sync.Mutex
	channels map[string]bool // every channel published to or subscribed
	proxies  []*faultnet.Proxy
}

// newEnv starts a server with bizzes and serve's args.
func newEnv(t *testing.T, bizzes []biz, args ...string) *env {
	t.Helper()
	e := newEnvNoServer(t, bizzes)
	e.srv = servetest.Start(t, servetest.Config{
		Bin: mustBinary(t), YAML: configYAML(bizzes), APIKey: e.apiKey, TokenSecret: e.secret,
		Args: append([]string{"--log-level", "warn"}, args...),
	})
	e.api = e.apiClient(e.srv.URL())
	return e
}

// newEnvNoServer is newEnv for a scenario that starts its own servers.
func newEnvNoServer(t *testing.T, bizzes []biz) *env {
	t.Helper()
	mustBinary(t)
	seed := seedOf(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	e := &env{
		t: t, seed: seed, rng: rng, h: history.New(),
		apiKey: fmt.Sprintf("chaos-api-key-%016x", rng.Uint64()), secret: fmt.Sprintf("chaos-token-secret-%016x", rng.Uint64()),
		bizzes: make(map[string]biz), channels: make(map[string]bool),
	}
	for _, z := range bizzes {
		e.bizzes[z.name] = z
	}
	return e
}

// apiClient is a business API client of base, with its own connections.
func (e *env) apiClient(base string) *apiclient.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &apiclient.Client{BaseURL: base, APIKey: e.apiKey, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// proxy starts a fault-injecting proxy in front of upstream.
func (e *env) proxy(upstream string) *faultnet.Proxy {
	e.t.Helper()
	p, err := faultnet.Listen(upstream)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Close)
	e.mu.Lock()
	e.proxies = append(e.proxies, p)
	e.mu.Unlock()
	return p
}

// chaos prepares a seeded schedule of faults on proxies; the returned
// func runs it for d. The seed is drawn now, on the test's goroutine, so
// the run's seed fixes it whatever goroutine runs it.
func (e *env) chaos(c faultnet.Chaos) func(ctx context.Context, d time.Duration) {
	c.Seed = e.rng.Uint64()
	return func(ctx context.Context, d time.Duration) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		steps, err := c.Run(ctx)
		if err != nil {
			e.t.Errorf("faultnet: %v", err)
		}
		e.t.Cleanup(func() {
			if !e.t.Failed() {
				return
			}
			for i, s := range steps {
				e.t.Logf("fault step %d: %s", i, s)
			}
		})
	}
}

// injected sums what every proxy injected, for the log.
func (e *env) injected() (total int, by map[faultnet.Kind]int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	by = make(map[faultnet.Kind]int)
	for _, p := range e.proxies {
		for k, n := range p.Injected() {
			by[k] += n
			total += n
		}
	}
	return total, by
}

func (e *env) token(user string, groups ...string) string {
	e.t.Helper()
	tok, err := auth.Mint([]byte(e.secret), auth.Claims{User: user, Groups: groups, ExpiresAt: time.Now().Add(24 * time.Hour)}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) addChannels(chs ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range chs {
		e.channels[c] = true
	}
}

// channelsOf names the channels a device of user with groups reads of
// bizzes.
func (e *env) channelsOf(user string, groups []string, bizzes ...string) []string {
	var out []string
	for _, b := range bizzes {
		switch e.bizzes[b].target {
		case "user":
			out = append(out, b+"/user:"+user)
		case "global":
			out = append(out, b+"/global")
		case "group":
			for _, g := range groups {
				out = append(out, b+"/group:"+g)
			}
		}
	}
	return out
}

// publisher is one backend sender: one publish at a time, each retried
// with its idempotency key until it is answered.
type publisher struct {
	e    *env
	name string
	api  *apiclient.Client
	n    int
	// giveUp is when an unanswered publish stops being retried and is
	// recorded as unknown.
	giveUp atomic.Int64
}

func (e *env) publisher(name string, api *apiclient.Client) *publisher {
	p := &publisher{e: e, name: name, api: api}
	p.giveUp.Store(time.Now().Add(24 * time.Hour).UnixNano())
	return p
}

// publishTo sends one entry to target of biz: a message, or a put of key
// for a compacted biz. It returns when the publish was answered or given up.
func (p *publisher) publishTo(ctx context.Context, bizName, target, key string) {
	p.n++
	data := fmt.Sprintf(`{"w":%q,"n":%d,"t":%d}`, p.name, p.n, time.Now().UnixNano())
	req := apiclient.PublishRequest{Biz: bizName, Data: json.RawMessage(data), IdempotencyKey: fmt.Sprintf("%s-%d", p.name, p.n)}
	ch := bizName + "/" + target
	switch {
	case target == "global":
		req.Global = true
	case strings.HasPrefix(target, "user:"):
		req.Users = []string{strings.TrimPrefix(target, "user:")}
	case strings.HasPrefix(target, "group:"):
		req.Groups = []string{strings.TrimPrefix(target, "group:")}
	}
	if key != "" {
		req.Op, req.Key = syncpoint.OpPut, key
	}
	p.e.addChannels(ch)
	rec := history.Publish{Writer: p.name, Channel: ch, Key: key, Digest: history.Digest([]byte(data))}
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := p.api.Publish(rctx, &req)
		cancel()
		var se *apiclient.StatusError
		switch {
		case err == nil && len(resp.Entries) == 1 && resp.Entries[0].Error == nil:
			rec.Outcome, rec.Seq = history.Acked, resp.Entries[0].Seq
			p.e.h.Publish(rec)
			return
		case err == nil && len(resp.Entries) == 1 && !retryable(resp.Entries[0].Error.Code):
			rec.Outcome = history.Refused
			p.e.h.Publish(rec)
			return
		case errors.As(err, &se) && se.Status/100 == 4 && se.Status != http.StatusRequestTimeout && se.Status != http.StatusTooManyRequests:
			rec.Outcome = history.Refused
			p.e.h.Publish(rec)
			return
		}
		if time.Now().UnixNano() > p.giveUp.Load() {
			rec.Outcome = history.Unknown
			p.e.h.Publish(rec)
			return
		}
		time.Sleep(time.Duration(20+min(attempt, 10)*20) * time.Millisecond)
	}
}

func retryable(code syncpoint.ErrorCode) bool {
	return code == syncpoint.CodeUnavailable || code == syncpoint.CodeInternal || code == syncpoint.CodeRateLimited
}

// target is where a backend publishes, and what keys it uses there.
type target struct {
	biz, target string
	keys        int // a compacted biz's keys; 0 for messages
}

// backend prepares writers publishers named prefix+"w<i>"; the returned
// func runs them, each picking targets at random, until ctx is done; then
// each finishes its publish in flight, retrying it until retryFor has
// passed. It returns how many publishes were sent once all are done.
func (e *env) backend(prefix string, api *apiclient.Client, writers int, pause, retryFor time.Duration, targets []target) func(ctx context.Context) int {
	type writer struct {
		p   *publisher
		rng *rand.Rand
	}
	var ws []writer
	for w := range writers {
		ws = append(ws, writer{e.publisher(fmt.Sprintf("%sw%d", prefix, w), api), newRand(e.rng)})
	}
	return func(ctx context.Context) int {
		var wg sync.WaitGroup
		var total atomic.Int64
		for _, w := range ws {
			p, rng := w.p, w.rng
			wg.Go(func() {
				stop := context.AfterFunc(ctx, func() { p.giveUp.Store(time.Now().Add(retryFor).UnixNano()) })
				defer stop()
				for ctx.Err() == nil {
					tg := targets[rng.IntN(len(targets))]
					key := ""
					if tg.keys > 0 {
						key = fmt.Sprintf("k%d", rng.IntN(tg.keys))
					}
					p.publishTo(ctx, tg.biz, tg.target, key)
					total.Add(1)
					if pause > 0 {
						time.Sleep(time.Duration(rng.Int64N(int64(pause) + 1)))
					}
				}
			})
		}
		wg.Wait()
		return int(total.Load())
	}
}

// device is one Go SDK device. What its app is handed goes into a table
// of the device's own database, in the handler's transaction, so the
// history sees exactly what committed.
type device struct {
	e        *env
	id, user string
	groups   []string
	channels []string
	cl       *client.Client
	rng      *rand.Rand
	onEntry  func(client.Entry) // called by the handler, for latency
	sessions atomic.Int64       // welcomes received

	mu      sync.Mutex
	uploads []history.Upload
	refused map[string]string // digest of a refused change → its code
	n       int
	records []string // ids of the device's records in each compacted writable biz
	cancel  context.CancelFunc
	done    chan error
}

// devOpts shape a device.
type devOpts struct {
	id, user string
	groups   []string
	bizzes   []string
	server   string // http://host:port, or "" for tcp
	tcp      string
	proto    bool // protobuf over WebSocket
	mod      func(*client.Config)
}

func (e *env) openDevice(o devOpts) *device {
	e.t.Helper()
	d := &device{e: e, id: o.id, user: o.user, groups: o.groups, rng: newRand(e.rng), refused: make(map[string]string)}
	d.channels = e.channelsOf(o.user, o.groups, o.bizzes...)
	e.addChannels(d.channels...)
	for range 3 {
		d.records = append(d.records, recordID(d.rng))
	}
	cfg := client.Config{
		Server: o.server, TCP: o.tcp,
		Token:       e.token(o.user, o.groups...),
		DeviceID:    o.id,
		Bizzes:      o.bizzes,
		DBPath:      filepath.Join(e.t.TempDir(), o.id+".db"),
		MinBackoff:  20 * time.Millisecond,
		MaxBackoff:  500 * time.Millisecond,
		StableAfter: time.Second,
		AckInterval: 20 * time.Millisecond,
		DialTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second,
		Handler: func(tx *sql.Tx, batch []client.Entry) error {
			for _, en := range batch {
				if _, err := tx.Exec(`INSERT INTO chaos_applied (kind, channel, seq, op, key, digest) VALUES ('entry', ?, ?, ?, ?, ?)`,
					en.Channel, int64(en.Seq), en.Op, en.Key, history.Digest(en.Data)); err != nil {
					return err
				}
				if d.onEntry != nil {
					d.onEntry(en)
				}
			}
			return nil
		},
		OnReset: func(ch string) { d.note("reset", ch, 0) },
		OnGap:   func(ch string, first uint64) { d.note("gap", ch, first) },
		OnConflict: func(cf client.Conflict) {
			d.refuse(cf.Change, cf.Code)
			for _, c := range cf.Dropped {
				d.refuse(c, "dropped")
			}
		},
		OnWriteError: func(we client.WriteError) { d.refuse(we.Change, we.Code) },
		OnState: func(s client.State) {
			if s == client.Connected {
				d.sessions.Add(1)
			}
		},
	}
	if o.proto {
		cfg.Encoding = client.EncodingProto
	}
	if o.mod != nil {
		o.mod(&cfg)
	}
	cl, err := client.Open(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := cl.DB().Exec(`CREATE TABLE IF NOT EXISTS chaos_applied (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, channel TEXT, seq INTEGER, op TEXT, key TEXT, digest TEXT)`); err != nil {
		e.t.Fatal(err)
	}
	d.cl = cl
	e.t.Cleanup(func() { d.stop(); cl.Close() })
	return d
}

// recordID is a record id of the form the server takes (a MongoDB
// ObjectId's 24 hex digits), drawn from the run's randomness.
func recordID(rng *rand.Rand) string {
	return fmt.Sprintf("%08x%016x", rng.Uint32(), rng.Uint64())
}

func (d *device) note(kind, ch string, first uint64) {
	// Notices are at least once; a repeated one changes nothing.
	if _, err := d.cl.DB().Exec(`INSERT INTO chaos_applied (kind, channel, seq) VALUES (?, ?, ?)`, kind, ch, int64(first)); err != nil {
		d.e.t.Errorf("device %s: note %s: %v", d.id, kind, err)
	}
}

func (d *device) refuse(c client.Change, code string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.Op == client.OpPut {
		d.refused[history.Digest(c.Data)] = code
	}
}

// run connects the device until stop.
func (d *device) run() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan error, 1)
	go func() { d.done <- d.cl.Run(ctx) }()
}

func (d *device) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.cancel = nil
	}
}

// put changes one of the device's records in a compacted writable biz, or
// adds a record to a writable biz that keeps every entry.
func (d *device) put(ctx context.Context, bizName string) error {
	d.mu.Lock()
	d.n++
	n := d.n
	id := recordID(d.rng)
	if d.e.bizzes[bizName].compact {
		id = d.records[d.rng.IntN(len(d.records))]
	}
	d.mu.Unlock()
	ch := bizName + "/user:" + d.user
	data := fmt.Sprintf(`{"dev":%q,"n":%d}`, d.id, n)
	if err := d.cl.PutTo(ctx, ch, id, json.RawMessage(data)); err != nil {
		return err
	}
	d.mu.Lock()
	d.uploads = append(d.uploads, history.Upload{Device: d.id, Channel: ch, Key: id, Op: "put", Digest: history.Digest([]byte(data)), Outcome: history.Acked})
	d.mu.Unlock()
	return nil
}

// uploading puts records every pause or so until ctx is done.
func (d *device) uploading(ctx context.Context, pause time.Duration, bizzes ...string) {
	d.mu.Lock()
	rng := newRand(d.rng)
	d.mu.Unlock()
	for ctx.Err() == nil {
		if err := d.put(ctx, bizzes[rng.IntN(len(bizzes))]); err != nil && ctx.Err() == nil {
			d.e.t.Errorf("device %s: put: %v", d.id, err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause/2 + time.Duration(rng.Int64N(int64(pause)))):
		}
	}
}

// collect hands what the device did and saw to the history: its applied
// entries and notices in commit order, its uploads with their outcomes,
// and its local records of compacted bizzes.
func (d *device) collect(ctx context.Context) error {
	h := d.e.h
	rows, err := d.cl.DB().QueryContext(ctx, `SELECT kind, channel, seq, coalesce(op, ''), coalesce(key, ''), coalesce(digest, '') FROM chaos_applied ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var kind, ch, op, key, digest string
		var seq int64
		if err := rows.Scan(&kind, &ch, &seq, &op, &key, &digest); err != nil {
			return err
		}
		switch kind {
		case "entry":
			h.Apply(d.id, ch, history.Entry{Seq: uint64(seq), Op: op, Key: key, Digest: digest})
		case "reset":
			h.Reset(d.id, ch)
		case "gap":
			h.Gap(d.id, ch, uint64(seq))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	h.Expect(d.id, d.channels...)
	d.mu.Lock()
	for _, u := range d.uploads {
		if code, ok := d.refused[u.Digest]; ok {
			u.Outcome, u.Code = history.Refused, code
		}
		h.Upload(u)
	}
	d.mu.Unlock()
	for _, ch := range d.channels {
		biz, _, _ := strings.Cut(ch, "/")
		if !d.e.bizzes[biz].compact {
			continue
		}
		recs, err := d.cl.List(ctx, ch)
		if err != nil {
			return err
		}
		digests := make(map[string]string, len(recs))
		for k, v := range recs {
			digests[k] = history.Digest(v)
		}
		h.Records(d.id, ch, digests)
	}
	return nil
}

// head is a channel's last seq on the server.
func (e *env) head(ctx context.Context, api *apiclient.Client, ch string) (uint64, error) {
	biz, target, _ := strings.Cut(ch, "/")
	var info struct {
		LastSeq uint64 `json:"last_seq"`
	}
	err := api.Call(ctx, "GET", "/v1/channels/"+biz+"/"+url.PathEscape(target)+"?limit=1", nil, &info)
	return info.LastSeq, err
}

// caughtUp is a device, or another kind of client, that can say how far it
// got: its position in each channel, and whether uploads wait.
type caughtUp interface {
	name() string
	positions() map[string]uint64
	pending() int
	subscribed() []string
}

func (d *device) name() string { return d.id }
func (d *device) pending() int { return d.cl.Pending() }
func (d *device) subscribed() []string {
	return d.channels
}
func (d *device) positions() map[string]uint64 {
	out := make(map[string]uint64)
	for ch, p := range d.cl.Positions() {
		out[ch] = p.Seq
	}
	return out
}

// converge waits until every client has sent its uploads and holds every
// channel it reads up to the server's head; it fails the test after
// timeout, naming who lags.
func (e *env) converge(api *apiclient.Client, timeout time.Duration, cs ...caughtUp) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	var behind []string
	for {
		behind = behind[:0]
		heads := make(map[string]uint64)
		for _, c := range cs {
			if n := c.pending(); n > 0 {
				behind = append(behind, fmt.Sprintf("%s has %d uploads pending", c.name(), n))
				continue
			}
			pos := c.positions()
			for _, ch := range c.subscribed() {
				h, ok := heads[ch]
				if !ok {
					var err error
					if h, err = e.head(ctx, api, ch); err != nil {
						behind = append(behind, fmt.Sprintf("head of %s: %v", ch, err))
						continue
					}
					heads[ch] = h
				}
				if pos[ch] < h {
					behind = append(behind, fmt.Sprintf("%s is at %d of %d in %s", c.name(), pos[ch], h, ch))
				}
			}
		}
		if len(behind) == 0 {
			e.t.Logf("converged in %s", time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			sort.Strings(behind)
			e.t.Fatalf("not converged after %s (%d behind):\n  %s", timeout, len(behind), strings.Join(behind[:min(len(behind), 30)], "\n  "))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readServer reads every entry of every channel the run touched.
func (e *env) readServer(api *apiclient.Client) []history.Channel {
	e.t.Helper()
	e.mu.Lock()
	names := slices.Sorted(maps.Keys(e.channels))
	e.mu.Unlock()
	var out []history.Channel
	for _, name := range names {
		bizName, target, _ := strings.Cut(name, "/")
		z := e.bizzes[bizName]
		ch := history.Channel{Name: name, Compacted: z.compact, Trimmed: z.trimmed}
		after := uint64(0)
		var last uint64
		for {
			var page struct {
				LastSeq uint64 `json:"last_seq"`
				Entries []struct {
					Seq  uint64          `json:"seq"`
					Op   string          `json:"op"`
					Key  string          `json:"key"`
					Data json.RawMessage `json:"data"`
				} `json:"entries"`
				More bool `json:"more"`
			}
			path := fmt.Sprintf("/v1/channels/%s/%s?after=%d&limit=1000", bizName, url.PathEscape(target), after)
			if err := api.Call(context.Background(), "GET", path, nil, &page); err != nil {
				e.t.Fatalf("read %s: %v", name, err)
			}
			last = page.LastSeq
			for _, en := range page.Entries {
				ch.Entries = append(ch.Entries, history.Entry{Seq: en.Seq, Op: en.Op, Key: en.Key, Digest: history.Digest(en.Data)})
				after = en.Seq
			}
			if !page.More || len(page.Entries) == 0 {
				break
			}
		}
		if z.trimmed {
			// What is retained starts at the first entry returned; one
			// expired but not yet swept is not returned.
			ch.FirstSeq = last + 1
			if len(ch.Entries) > 0 {
				ch.FirstSeq = ch.Entries[0].Seq
			}
		}
		out = append(out, ch)
	}
	return out
}

// check collects every device, reads the server and checks the history;
// it logs what was checked and fails the test on any broken promise.
func (e *env) check(api *apiclient.Client, devs ...*device) *history.Report {
	e.t.Helper()
	for _, d := range devs {
		if err := d.collect(context.Background()); err != nil {
			e.t.Fatalf("collect %s: %v", d.id, err)
		}
	}
	rep := e.h.Check(e.readServer(api))
	total, by := e.injected()
	sessions := 0
	for _, d := range devs {
		sessions += int(d.sessions.Load())
	}
	e.t.Logf("%d faults injected: %v; %d SDK sessions", total, by, sessions)
	e.t.Logf("%s", rep.Summary())
	if !rep.OK() {
		e.t.Errorf("broken promises:\n%s", rep)
	}
	return rep
}

// latencies collects delivery latencies for the log.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// take returns a summary of what was collected since the last take.
func (l *latencies) take() string {
	l.mu.Lock()
	d := l.d
	l.d = nil
	l.mu.Unlock()
	if len(d) == 0 {
		return "no entries"
	}
	slices.Sort(d)
	q := func(p float64) time.Duration {
		return d[min(len(d)-1, int(p*float64(len(d))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("%d entries, p50 %s, p99 %s, max %s", len(d), q(0.5), q(0.99), d[len(d)-1].Round(100*time.Microsecond))
}

// sentAt reads the send time a backend publisher put in an entry's data.
func sentAt(data []byte) (time.Time, bool) {
	var v struct {
		T int64 `json:"t"`
	}
	if json.Unmarshal(data, &v) != nil || v.T == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, v.T), true
}

// rawWriter uploads records over POST /v1/write with write_ids of its
// own, sending a write again with the same write_id until it gets a
// result, and at times once more after one: every result it gets is
// recorded, so results of one write_id that disagree show.
type rawWriter struct {
	e      *env
	device string
	user   string
	token  string
	base   string
	http   *http.Client
	rng    *rand.Rand
	n      int
	// giveUp is when an unanswered write stops being sent again.
	giveUp atomic.Int64
}

func (e *env) rawWriter(device, user, base string) *rawWriter {
	tr := &http.Transport{DisableCompression: true}
	e.t.Cleanup(tr.CloseIdleConnections)
	w := &rawWriter{e: e, device: device, user: user, token: e.token(user), base: base,
		http: &http.Client{Transport: tr, Timeout: 10 * time.Second}, rng: newRand(e.rng)}
	w.giveUp.Store(time.Now().Add(24 * time.Hour).UnixNano())
	e.addChannels("log/user:" + user)
	return w
}

// write uploads one new record of the log biz.
func (w *rawWriter) write() {
	w.n++
	writeID := fmt.Sprintf("%s-w%d", w.device, w.n)
	id := recordID(w.rng)
	data := fmt.Sprintf(`{"raw":%q,"n":%d}`, w.device, w.n)
	body := fmt.Sprintf(`{"write":{"write_id":%q,"changes":[{"biz":"log","created":[{"id":%q,"data":%s}]}]}}`, writeID, id, data)
	rec := history.Upload{Device: w.device, WriteID: writeID, Channel: "log/user:" + w.user, Key: id, Op: "put", Digest: history.Digest([]byte(data))}
	again := w.rng.IntN(5) == 0
	for attempt := 0; ; attempt++ {
		res, status, err := w.post(body)
		switch {
		case err == nil && status == http.StatusOK:
			u := rec
			switch {
			case len(res.Saved) == 1:
				u.Outcome, u.Seq = history.Acked, res.Saved[0].Seq
			case len(res.Errors) > 0 && retryable(syncpoint.ErrorCode(res.Errors[0].Code)):
				goto retry
			default:
				u.Outcome = history.Refused
				if len(res.Errors) > 0 {
					u.Code = res.Errors[0].Code
				}
			}
			w.e.h.Upload(u)
			if !again {
				return
			}
			again = false
			continue
		case err == nil && status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
			u := rec
			u.Outcome, u.Code = history.Refused, fmt.Sprint(status)
			w.e.h.Upload(u)
			return
		}
	retry:
		if time.Now().UnixNano() > w.giveUp.Load() {
			u := rec
			u.Outcome = history.Unknown
			w.e.h.Upload(u)
			return
		}
		time.Sleep(time.Duration(20+min(attempt, 10)*20) * time.Millisecond)
	}
}

type writeResult struct {
	Saved []struct {
		Seq uint64 `json:"seq"`
	} `json:"saved"`
	Errors []struct {
		Code string `json:"code"`
	} `json:"errors"`
}

func (w *rawWriter) post(body string) (*writeResult, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", w.base+"/v1/write", strings.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	req.Header.Set("X-Device-Id", w.device)
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var out struct {
		WriteResult writeResult `json:"write_result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, resp.StatusCode, err
	}
	return &out.WriteResult, resp.StatusCode, nil
}

// writing writes until ctx is done, then finishes the write in flight,
// sending it again until retryFor has passed.
func (w *rawWriter) writing(ctx context.Context, pause, retryFor time.Duration) {
	stop := context.AfterFunc(ctx, func() { w.giveUp.Store(time.Now().Add(retryFor).UnixNano()) })
	defer stop()
	for ctx.Err() == nil {
		w.write()
		time.Sleep(time.Duration(w.rng.Int64N(int64(pause) + 1)))
	}
}
