// Package sse serves Server-Sent Events, GET /v1/events?biz=a,b: one
// stream per device that carries every channel of the bizzes it names, for
// browsers' EventSource and anything else that can read a long HTTP
// response but not open a socket.
//
// The stream reads through the feed, so it is authorized as the socket
// hello is and starts where the hello would. Each event's id encodes the
// position of every channel of the stream after that event (see id.go),
// signed for the user and device; a client that reconnects with it as
// Last-Event-ID resumes exactly after the last event it got, across all
// channels, and that position becomes the device's sync point. Events are
// entry (data: the entry as in a push), reset and gap (data: the channel's
// status as in a welcome), and close (data: the error frame that ends the
// stream). A comment line is sent every Heartbeat while idle.
//
// Each stream holds at most one batch of events; the store holds the rest
// of its backlog. A stream whose writes stall for WriteTimeout, or whose
// queue of non-persistent entries overflows, is closed, and resumes by
// Last-Event-ID. docs/http-sync-sse.md is the reference for clients.
//
// Tail serves the business API's tail of one channel with the same events,
// for an operator rather than a device (tail.go).
package sse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/httpapi"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/wire"
)

// Defaults for Config.
const (
	DefaultHeartbeat     = 15 * time.Second
	DefaultRetry         = 3 * time.Second
	DefaultWriteTimeout  = 10 * time.Second
	DefaultMaxBatch      = 256
	DefaultMaxBatchBytes = 1 << 20
	// MinKeyBytes is the shortest id key accepted.
	MinKeyBytes = 16
)

// Verifier checks a device token.
type Verifier interface {
	Verify(token string) (syncpoint.Claims, error)
}

// Config configures a Handler. Feed, Registry, Verifier and Key are
// required.
type Config struct {
	Feed     *feed.Feed
	Registry *syncpoint.Registry
	Verifier Verifier
	// Key signs event ids. Every node of a cluster needs the same key, so
	// that a stream resumes on any of them; a new key makes every
	// outstanding id fail with 403.
	Key        []byte
	Logger     *slog.Logger
	Clock      clock.Clock
	Registerer prometheus.Registerer

	Heartbeat     time.Duration // a comment line this often while idle
	Retry         time.Duration // the reconnection delay asked of the client
	WriteTimeout  time.Duration // a stream whose write takes longer is closed
	MaxBatch      int           // events per write
	MaxBatchBytes int           // about this many bytes of entry data per write
}

// Handler serves GET /v1/events.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	clock   clock.Clock
	streams prometheus.Gauge
	tails   prometheus.Gauge
	events  prometheus.Counter

	closing   chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	online    map[string]int // streams per device
}

// New returns a handler for cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Feed == nil || cfg.Registry == nil || cfg.Verifier == nil {
		return nil, errors.New("sse: a feed, a registry and a verifier are required")
	}
	if len(cfg.Key) < MinKeyBytes {
		return nil, fmt.Errorf("sse: the id key is %d bytes; want at least %d", len(cfg.Key), MinKeyBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	h := &Handler{
		cfg:     cfg,
		log:     cfg.Logger,
		clock:   cfg.Clock,
		closing: make(chan struct{}),
		online:  make(map[string]int),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncpoint_sse_streams", Help: "Server-Sent Event streams open on this node."}),
		tails:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncpoint_sse_tails", Help: "Operators' tails of a channel (GET /v1/channels/{biz}/{target}/events) open on this node."}),
		events:  prometheus.NewCounter(prometheus.CounterOpts{Name: "syncpoint_sse_events_total", Help: "Server-Sent Events sent (entries, resets, gaps and closes)."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(h.streams, h.tails, h.events)
	}
	return h, nil
}

// Close ends every stream with a close event of code 3000 (going away), so
// that clients reconnect, to another node if need be; new streams are
// refused with 503. It does not wait: the streams end as their handlers
// return, which http.Server.Shutdown waits for.
func (h *Handler) Close() {
	h.closeOnce.Do(func() { close(h.closing) })
}

// Online reports whether the device has a stream open on this node.
func (h *Handler) Online(deviceID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online[deviceID] > 0
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	select {
	case <-h.closing:
		h.refuse(w, r, syncpoint.Errorf(syncpoint.CodeUnavailable, "the server is shutting down"))
		return
	default:
	}
	st, err := h.open(r)
	if err != nil {
		h.refuse(w, r, err)
		return
	}
	defer st.s.Close()
	h.mu.Lock()
	h.online[st.id.DeviceID]++
	h.mu.Unlock()
	h.streams.Inc()
	defer func() {
		h.streams.Dec()
		h.mu.Lock()
		if h.online[st.id.DeviceID]--; h.online[st.id.DeviceID] <= 0 {
			delete(h.online, st.id.DeviceID)
		}
		h.mu.Unlock()
	}()
	st.run(w, r)
}

// refuse answers a request that opens no stream with the JSON error shape
// and the status of the one error table.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	code := syncpoint.Code(err)
	msg := syncpoint.Message(err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		code, msg = syncpoint.CodeUnavailable, "the request was canceled before it finished"
	}
	if code == syncpoint.CodeInternal {
		h.log.Error("sse: open stream", "remote", r.RemoteAddr, "err", err)
		msg = "internal error"
	} else {
		// The token is never logged, and neither is the URL, which may hold it.
		h.log.Info("sse stream refused", "remote", r.RemoteAddr, "code", string(code), "reason", msg)
	}
	status := httpapi.Status(code)
	hdr := w.Header()
	switch status {
	case http.StatusUnauthorized:
		hdr.Set("WWW-Authenticate", `Bearer realm="syncpoint"`)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		hdr.Set("Retry-After", "1")
	}
	b := []byte(`{"error":{"code":`)
	b = strconv.AppendQuote(b, string(code))
	b = append(b, `,"message":`...)
	b = strconv.AppendQuote(b, msg)
	b = append(b, "}}\n"...)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// param returns the header's value, else the query parameter's: EventSource
// cannot set headers.
func param(r *http.Request, header, query string) string {
	if v := r.Header.Get(header); v != "" {
		return v
	}
	return r.URL.Query().Get(query)
}

// token returns the bearer token of the Authorization header, else the
// access_token query parameter.
func token(r *http.Request) (string, error) {
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, tok, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", syncpoint.Errorf(syncpoint.CodeUnauthorized, "the Authorization header is not Bearer <token>")
		}
		return strings.TrimSpace(tok), nil
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		return tok, nil
	}
	return "", syncpoint.Errorf(syncpoint.CodeUnauthorized, "no token: send Authorization: Bearer <token>, or access_token in the query")
}

// bizzes reads biz=a,b (or biz=a&biz=b).
func bizzes(r *http.Request) []string {
	var out []string
	for _, v := range r.URL.Query()["biz"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				out = append(out, name)
			}
		}
	}
	return out
}

// open checks the request and opens the device's feed at its
// Last-Event-ID, or at its stored sync points without one.
func (h *Handler) open(r *http.Request) (*stream, error) {
	tok, err := token(r)
	if err != nil {
		return nil, err
	}
	claims, err := h.cfg.Verifier.Verify(tok)
	if err != nil {
		return nil, err
	}
	deviceID := param(r, "X-Device-Id", "device_id")
	if deviceID == "" {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "no device id: send X-Device-Id, or device_id in the query")
	}
	names := bizzes(r)
	if len(names) == 0 {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "no bizzes: name them in the query, biz=a,b")
	}
	if len(names) > feed.MaxBizzes {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "at most %d bizzes may be named", feed.MaxBizzes)
	}
	codec := newIDCodec(h.cfg.Key, claims.User, deviceID)
	var positions map[syncpoint.Channel]syncpoint.Position
	lastID := param(r, "Last-Event-ID", "last_event_id")
	if lastID != "" {
		got, err := codec.decodeID(lastID)
		if err != nil {
			return nil, err
		}
		positions = h.positions(claims, deviceID, names, got)
	}
	s, statuses, err := h.cfg.Feed.Open(r.Context(), feed.Request{
		Claims:     claims,
		DeviceID:   deviceID,
		Platform:   param(r, "X-Device-Platform", "platform"),
		AppVersion: param(r, "X-Device-App-Version", "app_version"),
		Bizzes:     names,
		Positions:  positions,
		FromStored: lastID == "",
		Watch:      true,
	})
	if err != nil {
		return nil, err
	}
	st := &stream{h: h, s: s, id: s.Identity(), statuses: statuses, codec: codec, resumed: lastID != ""}
	cursors := s.Cursors()
	st.hashes = make([]chanHash, len(cursors))
	st.pos = make([]syncpoint.Position, len(cursors))
	persistent := 0
	for i, c := range cursors {
		st.hashes[i] = hashChannel(c.Name)
		if !c.Ephemeral {
			persistent++
		}
	}
	if persistent > MaxIDPositions {
		s.Close()
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "the bizzes expand to %d channels; a stream holds at most %d", persistent, MaxIDPositions)
	}
	for _, x := range statuses {
		if !x.Cursor.Ephemeral {
			st.pos[x.Cursor.Index] = syncpoint.Position{Epoch: x.Info.Epoch, Seq: x.From}
		}
	}
	return st, nil
}

// positions maps an id's positions to the channels the request may read:
// those of its bizzes for this identity, as the feed resolves them. A
// position of any other channel matches none and is dropped.
func (h *Handler) positions(claims syncpoint.Claims, deviceID string, names []string, got []idPos) map[syncpoint.Channel]syncpoint.Position {
	id := syncpoint.Identity{DeviceID: deviceID, UserID: claims.User, Groups: claims.Groups}
	byHash := make(map[chanHash]syncpoint.Channel)
	for _, name := range names {
		if b, ok := h.cfg.Registry.Get(name); ok {
			for _, ch := range id.Channels(b) {
				byHash[hashChannel(ch.String())] = ch
			}
		}
	}
	out := make(map[syncpoint.Channel]syncpoint.Position, len(got))
	for _, p := range got {
		if ch, ok := byHash[p.channel]; ok {
			out[ch] = p.pos
		}
	}
	return out
}

// stream is one open event stream.
type stream struct {
	h        *Handler
	s        *feed.Stream
	id       syncpoint.Identity
	statuses []feed.Status
	codec    *idCodec
	resumed  bool
	hashes   []chanHash           // per cursor
	pos      []syncpoint.Position // per cursor: what the client has been sent
	// tail is an operator's tail of one channel (Tail): its ids are the
	// channel's plain position, as the API key reads every channel.
	tail bool

	w       http.ResponseWriter
	rc      *http.ResponseController
	buf     []byte
	n       int // events in buf
	entry   []byte
	scratch wire.Entry
}

// Room implements feed.Sink.
func (st *stream) Room() int {
	if len(st.buf) >= st.h.cfg.MaxBatchBytes {
		return 0
	}
	return st.h.cfg.MaxBatch - st.n
}

// Add implements feed.Sink: one entry event, whose id already counts it.
func (st *stream) Add(c *feed.Cursor, e *syncpoint.Entry) {
	if !c.Ephemeral {
		st.pos[c.Index] = syncpoint.Position{Epoch: c.Epoch, Seq: e.Seq}
	}
	st.scratch = wire.Entry{
		Channel: c.Name, Seq: e.Seq, Op: string(e.Op), Key: e.Key, Data: e.Data,
		CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, Origin: e.Origin,
	}
	var err error
	if st.entry, err = wire.AppendEntryJSON(st.entry[:0], &st.scratch); err != nil {
		// Stored data is checked when published; this is corrupt data,
		// which no client could take either.
		st.h.log.Error("sse: encode entry", st.attrs("channel", c.Name, "seq", e.Seq, "err", err)...)
		return
	}
	st.event(wire.EventEntry, st.entry, true)
}

// Moved implements feed.Sink: the next event's id carries c past entries
// that were not for the device.
func (st *stream) Moved(c *feed.Cursor) { st.pos[c.Index] = c.Position() }

// event appends one event to the batch, with the id of the positions as
// they now stand when withID.
func (st *stream) event(typ string, data []byte, withID bool) {
	switch {
	case withID && st.tail:
		if p := st.pos[0]; p.Epoch != "" {
			st.buf = appendTailID(st.buf, p)
		}
	case withID:
		st.buf = append(st.buf, "id: "...)
		st.buf = st.codec.appendID(st.buf, st.hashes, st.pos)
		st.buf = append(st.buf, '\n')
	}
	st.buf = wire.AppendEvent(st.buf, "", typ, data)
	st.n++
}

// status appends a reset or gap event; its id moves the channel to where
// delivery now resumes.
func (st *stream) status(x feed.Status) {
	c := x.Cursor
	st.pos[c.Index] = syncpoint.Position{Epoch: x.Info.Epoch, Seq: x.From}
	cs := wire.ChannelStatus{Channel: c.Name, Status: string(x.Status), Epoch: x.Info.Epoch, FirstSeq: x.Info.FirstSeq, LastSeq: x.Info.LastSeq, From: x.From}
	st.entry = wire.AppendChannelStatusJSON(st.entry[:0], &cs)
	st.event(string(x.Status), st.entry, true)
}

// flush writes the batch, bounded by WriteTimeout.
func (st *stream) flush() error {
	if len(st.buf) == 0 {
		return nil
	}
	if err := st.rc.SetWriteDeadline(st.h.clock.Now().Add(st.h.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := st.w.Write(st.buf)
	if err == nil {
		err = st.rc.Flush()
	}
	st.h.events.Add(float64(st.n))
	st.buf, st.n = st.buf[:0], 0
	if cap(st.buf) > 4*st.h.cfg.MaxBatchBytes {
		st.buf = nil // one huge entry passed; an idle stream keeps no big buffer
	}
	return err
}

func (st *stream) attrs(more ...any) []any {
	if st.tail {
		return append([]any{"tail", st.s.Cursors()[0].Name}, more...)
	}
	return append([]any{"device", st.id.DeviceID, "user", st.id.UserID}, more...)
}

// run streams until the client leaves, the token expires or is revoked,
// the stream falls behind, or the server closes.
func (st *stream) run(w http.ResponseWriter, r *http.Request) {
	h := st.h
	ctx := r.Context()
	st.w, st.rc = w, http.NewResponseController(w)
	// The write deadline must not outlive the stream on a connection that
	// serves the next request.
	defer st.rc.SetWriteDeadline(time.Time{})
	started := h.clock.Now()
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("X-Accel-Buffering", "no") // proxies that buffer would hold events back
	w.WriteHeader(http.StatusOK)
	h.log.Info("sse stream opened", st.attrs("remote", r.RemoteAddr, "channels", len(st.pos), "resumed", st.resumed)...)

	st.buf = append(st.buf, "retry: "...)
	st.buf = strconv.AppendInt(st.buf, h.cfg.Retry.Milliseconds(), 10)
	st.buf = append(st.buf, "\n\n"...)
	for _, x := range st.statuses {
		if x.Status != syncpoint.StatusOK {
			st.status(x)
		}
	}
	st.statuses = nil

	beat := time.NewTicker(h.cfg.Heartbeat)
	defer beat.Stop()
	var expiry <-chan time.Time
	if exp := st.s.Expires(); !exp.IsZero() {
		t := time.NewTimer(exp.Sub(h.clock.Now()))
		defer t.Stop()
		expiry = t.C
	}
	code, reason := st.loop(ctx, beat.C, expiry)
	if code != 0 && ctx.Err() == nil {
		e := wire.NewError(code, reason, true)
		st.entry = wire.AppendErrorJSON(st.entry[:0], e)
		st.event(wire.EventClose, st.entry, false)
		st.flush()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.WriteTimeout)
	if err := st.s.SaveLastSeen(sctx); err != nil && !errors.Is(err, syncpoint.ErrClosed) {
		h.log.Error("sse: save device on close", st.attrs("err", err)...)
	}
	cancel()
	h.log.Info("sse stream closed", st.attrs("duration", h.clock.Now().Sub(started).Round(time.Millisecond),
		"code", int(code), "close", code.String(), "reason", reason)...)
}

// loop sends events until the stream must end; it returns the close code
// and reason to tell the client, or 0 when the client left.
func (st *stream) loop(ctx context.Context, beat, expiry <-chan time.Time) (wire.CloseCode, string) {
	h := st.h
	for {
		// A busy stream never waits in the select below, so the ends are
		// checked on every turn too.
		select {
		case <-expiry:
			return wire.CloseUnauthorized, "the token expired; reconnect with a new one"
		case <-st.s.Revoked():
			return wire.CloseUnauthorized, "the token was revoked"
		case <-h.closing:
			return wire.CloseGoingAway, "the server is shutting down"
		default:
		}
		err := st.s.Read(ctx, st)
		var ce *feed.ChannelError
		switch {
		case errors.As(err, &ce):
			x, err := st.s.Recheck(ctx, ce.Cursor)
			if err != nil {
				return st.failed(ctx, err)
			}
			h.log.Info("channel "+string(x.Status)+" while streaming", st.attrs("channel", ce.Cursor.Name, "epoch", x.Info.Epoch, "first_seq", x.Info.FirstSeq)...)
			st.status(x)
		case syncpoint.Code(err) == syncpoint.CodeSlowConsumer:
			return wire.CloseSlowConsumer, syncpoint.Message(err) + "; reconnect with Last-Event-ID"
		case err != nil:
			return st.failed(ctx, err)
		}
		if len(st.buf) > 0 {
			if err := st.flush(); err != nil {
				h.log.Info("sse stream cut: a write failed", st.attrs("err", err)...)
				return 0, "the write failed"
			}
			continue
		}
		select {
		case <-st.s.Changed():
		case <-beat:
			st.buf = append(st.buf, ": heartbeat\n\n"...)
			if err := st.flush(); err != nil {
				return 0, "the write failed"
			}
		case <-expiry:
			return wire.CloseUnauthorized, "the token expired; reconnect with a new one"
		case <-st.s.Revoked():
			return wire.CloseUnauthorized, "the token was revoked"
		case <-h.closing:
			return wire.CloseGoingAway, "the server is shutting down"
		case <-ctx.Done():
			return 0, "the client left"
		}
	}
}

func (st *stream) failed(ctx context.Context, err error) (wire.CloseCode, string) {
	if ctx.Err() != nil {
		return 0, "the client left"
	}
	st.h.log.Error("sse: read", st.attrs("err", err)...)
	return wire.CloseInternal, "internal error"
}
