package client

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// Defaults filled in by Open.
const (
	DefaultMinBackoff   = 250 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultStableAfter  = 10 * time.Second
	DefaultAckInterval  = 200 * time.Millisecond
	DefaultAckEntries   = 512
	DefaultDialTimeout  = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxFrameBytes is above the server's 4 MiB receive limit: a
	// single entry of a biz with a large max_entry_bytes is sent alone and
	// may exceed it.
	DefaultMaxFrameBytes = 32 << 20
	// DefaultHeartbeatInterval is assumed when a welcome names none.
	DefaultHeartbeatInterval = 20 * time.Second
	// DefaultWriteRecords, DefaultWriteBytes and DefaultWritesInFlight
	// shape the outbox's uploads.
	DefaultWriteRecords   = 100
	DefaultWriteBytes     = 1 << 20
	DefaultWritesInFlight = 4
	// DefaultMaxRecordBytes matches the server's default max_entry_bytes
	// and stays well under its 4 MiB frame limit.
	DefaultMaxRecordBytes = syncpoint.DefaultMaxEntryBytes
	// maxWriteRecords is the server's limit on records in one write.
	maxWriteRecords = 1000
	// missedHeartbeats intervals without a frame mean the server is gone.
	missedHeartbeats = 3
)

// The WebSocket encodings.
const (
	EncodingJSON  = "json"
	EncodingProto = "proto"
)

// Config configures a Client. Server or TCP, a token, DeviceID and DBPath
// are required.
type Config struct {
	// Server is the server's base URL, "http://host:port" or
	// "https://host:port"; the WebSocket is at /v1/connect below it.
	Server string
	// TCP is "host:port" of the raw TCP listener (length-prefixed
	// protobuf), used instead of Server; TLS when TLS is set.
	TCP string
	// Fallbacks are more addresses of the same kind as Server (or TCP):
	// the other nodes of a cluster. A connection that cannot be made, or
	// that the node ends by shutting down, moves the client on to the
	// next address; the device resumes there from its sync points.
	Fallbacks []string
	// TLS configures TLS for TCP and for an https Server; nil means plain
	// TCP, and the system roots for https.
	TLS *tls.Config
	// Encoding is the WebSocket encoding: EncodingJSON (default) or
	// EncodingProto. TCP always speaks protobuf.
	Encoding string
	// Token is the device token. TokenFunc, when set, is called instead on
	// every (re)connect, so an expired token can be replaced.
	Token     string
	TokenFunc func(ctx context.Context) (string, error)

	DeviceID   string
	Platform   string
	AppVersion string
	Bizzes     []string

	// DBPath is the local SQLite database, created when missing.
	DBPath string

	// Handler is called with the new entries of each push, inside the
	// transaction that applies them and advances the positions: what it
	// writes through tx commits atomically with them. An error rolls the
	// whole push back; the connection is dropped and the entries come again
	// after a reconnect. Return StopAfter(n) to keep only the first n
	// entries and make Run return. The device's own uploads come back as
	// entries too (origin "device:<id>"). Do not call Put or Delete from
	// it: they need the transaction it is in.
	Handler func(tx *sql.Tx, batch []Entry) error
	// OnReset is called when a channel's history was replaced (its epoch
	// changed): its local records and position were dropped, and entries of
	// the new epoch follow.
	OnReset func(channel string)
	// OnGap is called when entries after the local position expired or were
	// trimmed before this device got them; delivery continues at firstSeq.
	OnGap func(channel string, firstSeq uint64)
	// OnState is called on every change of State, on the goroutine that
	// changed it.
	OnState func(State)
	// OnConflict is called when the server refused a local change because
	// the record changed since the version it was based on (a reject
	// biz), or kept its own value of a field both sides changed (a merge
	// biz). The local record has already been set to the server's, and
	// later local changes to it that were not sent yet were dropped.
	OnConflict func(Conflict)
	// OnWriteError is called when the server refused a local change for
	// any other reason (invalid_id, invalid_data, exists, forbidden...).
	// The change was rolled back to the server's version of the record.
	OnWriteError func(WriteError)

	Logger *slog.Logger // nil: discard
	Clock  clock.Clock  // nil: clock.Real{}

	// MinBackoff and MaxBackoff bound the delay before a reconnect: full
	// jitter over an exponentially growing ceiling. The ceiling starts over
	// after a session that lasted StableAfter.
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
	StableAfter time.Duration
	// AckInterval is the longest an applied position waits to be acked;
	// AckEntries applied entries are acked at once.
	AckInterval time.Duration
	AckEntries  int
	// DialTimeout bounds connecting, the hello and the welcome.
	DialTimeout time.Duration
	// WriteTimeout bounds sending one ack or pong.
	WriteTimeout time.Duration
	// MaxFrameBytes bounds one frame from the server.
	MaxFrameBytes int

	// WriteRecords and WriteBytes bound one upload of the outbox (a
	// record larger than WriteBytes goes alone); WritesInFlight is how
	// many uploads may await their result at once.
	WriteRecords   int
	WriteBytes     int
	WritesInFlight int
	// MaxRecordBytes bounds the id and data of one Put. Keep it under the
	// server's frame limit (4 MiB by default), or such a write would end
	// the connection instead of being refused on its own.
	MaxRecordBytes int
}

func (cfg *Config) setDefaults() {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = DefaultStableAfter
	}
	if cfg.AckInterval <= 0 {
		cfg.AckInterval = DefaultAckInterval
	}
	if cfg.AckEntries <= 0 {
		cfg.AckEntries = DefaultAckEntries
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.WriteRecords <= 0 {
		cfg.WriteRecords = DefaultWriteRecords
	}
	cfg.WriteRecords = min(cfg.WriteRecords, maxWriteRecords)
	if cfg.WriteBytes <= 0 {
		cfg.WriteBytes = DefaultWriteBytes
	}
	if cfg.WritesInFlight <= 0 {
		cfg.WritesInFlight = DefaultWritesInFlight
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	}
}

func (cfg *Config) validate() error {
	switch {
	case cfg.Server == "" && cfg.TCP == "":
		return errors.New("no server: set Config.Server or Config.TCP")
	case cfg.Server != "" && cfg.TCP != "":
		return errors.New("set Config.Server or Config.TCP, not both")
	case cfg.TCP != "" && cfg.Encoding == EncodingJSON:
		return errors.New("TCP speaks only protobuf; leave Config.Encoding empty")
	case cfg.Encoding != "" && cfg.Encoding != EncodingJSON && cfg.Encoding != EncodingProto:
		return fmt.Errorf("encoding %q: want %q or %q", cfg.Encoding, EncodingJSON, EncodingProto)
	case cfg.Token == "" && cfg.TokenFunc == nil:
		return errors.New("no token: set Config.Token or Config.TokenFunc")
	}
	if err := syncpoint.ValidateID("device id", cfg.DeviceID); err != nil {
		return err
	}
	for _, b := range cfg.Bizzes {
		if err := syncpoint.ValidateBizName(b); err != nil {
			return err
		}
	}
	return nil
}

// Entry is one entry handed to the app.
type Entry struct {
	Channel   string          `json:"channel"`
	Seq       uint64          `json:"seq"` // 0 for a non-persistent biz: live only, never deduplicated
	Op        string          `json:"op"`  // msg, put or delete
	Key       string          `json:"key,omitempty"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at,omitzero"`
	Origin    string          `json:"origin"`
}

// State is where the connection stands.
type State int

// The states.
const (
	// Disconnected: not connected; Run is waiting to reconnect, or not
	// running.
	Disconnected State = iota
	// Connecting: dialing, or waiting for the welcome.
	Connecting
	// Connected: the welcome arrived; entries stream.
	Connected
	// Stopped: Run returned for a fatal close (a refused token, a forbidden
	// biz, an unsupported version, a bad request), for a failure to connect
	// that retrying would repeat (PermanentError), or the client was closed.
	Stopped
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Disconnected:
		return "disconnected"
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// StopError is what StopAfter returns.
type StopError struct{ N int }

// Error implements error.
func (e *StopError) Error() string { return fmt.Sprintf("handler stopped after %d entries", e.N) }

// StopAfter is returned by a Handler to commit only the first n entries of
// its batch, with positions that cover exactly those, and then make Run
// return nil. The rest of the batch comes again in the next session.
func StopAfter(n int) error { return &StopError{N: n} }

// PermanentError is what Run returns when connecting fails in a way that
// reconnecting would only repeat: the server's certificate is not trusted,
// the server does not speak TLS, or it answered the WebSocket upgrade with
// an HTTP status that is not temporary (401, 403, 404...). Something must
// change (the TLS settings, the server URL) before Run is called again.
type PermanentError struct {
	Reason string // what is wrong, for people
	Err    error  // the failure, for errors.As
}

// Error implements error.
func (e *PermanentError) Error() string { return e.Reason + ": " + e.Err.Error() }

// Unwrap returns the failure.
func (e *PermanentError) Unwrap() error { return e.Err }

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("client: closed")

// Client is one device's connection and local store.
type Client struct {
	cfg   Config
	db    *sql.DB
	log   *slog.Logger
	clock clock.Clock
	// addrs are Server (or TCP) and the Fallbacks; wsURLs the WebSocket
	// URL of each Server; cur is the index of the one in use.
	addrs  []string
	wsURLs []string
	cur    atomic.Int32
	// kick tells a running session that the outbox has something new.
	kick chan struct{}
	// hooks are set by tests only.
	hooks hooks
	// rec is what reconciles by manifest keep between sessions
	// (reconcile.go).
	rec reconciler

	mu         sync.Mutex
	state      State
	pos        map[string]syncpoint.Position // committed positions, mirrored from the db
	serverLast map[string]uint64             // the newest seq the server has told of, per channel
	defaults   map[string]string             // biz -> the device's default channel, learned from welcomes
	running    bool
	closed     bool
	cancelRun  context.CancelFunc
	runDone    chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Open checks cfg, opens (or creates) the local database and its schema, and
// returns a Client that is not connected yet; call Run.
func Open(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, serverLast: make(map[string]uint64), kick: make(chan struct{}, 1)}
	c.addrs = append([]string{cfg.Server + cfg.TCP}, cfg.Fallbacks...)
	if cfg.Server != "" {
		for _, a := range c.addrs {
			u, err := wsURL(a)
			if err != nil {
				return nil, fmt.Errorf("client: %w", err)
			}
			c.wsURLs = append(c.wsURLs, u)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := openDB(ctx, cfg.DBPath)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.db = db
	if c.pos, err = loadPositions(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	if c.defaults, err = loadDefaults(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	return c, nil
}

// DB returns the local database, for the app's own tables and queries.
func (c *Client) DB() *sql.DB { return c.db }

// Close stops Run, waits for it to return and closes the local database.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		cancel, done := c.cancelRun, c.runDone
		c.mu.Unlock()
		if cancel != nil {
			cancel()
			<-done
		}
		c.closeErr = c.db.Close()
		c.setState(Stopped)
	})
	return c.closeErr
}

// State returns the connection's state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Client) setState(s State) {
	c.mu.Lock()
	changed := c.state != s
	c.state = s
	c.mu.Unlock()
	if changed && c.cfg.OnState != nil {
		c.cfg.OnState(s)
	}
}

// Positions returns the sync point of every channel held, as stored in the
// local database; nil when it cannot be read (the error is logged).
func (c *Client) Positions() map[string]syncpoint.Position {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := loadPositions(ctx, c.db)
	if err != nil {
		c.log.Error("client: read positions", "err", err)
		return nil
	}
	return p
}

// Lag returns, per channel of the session, how many seqs the server has
// told of (in the welcome and in pushes) beyond the local position.
func (c *Client) Lag() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.serverLast))
	for ch, last := range c.serverLast {
		var lag uint64
		if p := c.pos[ch].Seq; last > p {
			lag = last - p
		}
		out[ch] = lag
	}
	return out
}

// Get returns the local record key of channel: the data of its newest put,
// unless a delete followed or it expired.
func (c *Client) Get(ctx context.Context, channel, key string) (json.RawMessage, bool, error) {
	return getRecord(ctx, c.db, channel, key, c.clock.Now().UnixMilli())
}

// List returns every local record of channel that has not expired.
func (c *Client) List(ctx context.Context, channel string) (map[string]json.RawMessage, error) {
	return listRecords(ctx, c.db, channel, c.clock.Now().UnixMilli())
}

// Run connects and streams until ctx is done, reconnecting after every
// failure with jittered backoff. It returns nil when ctx is done or a
// Handler returned StopAfter, ErrClosed after Close, and otherwise only for
// a failure that retrying would repeat, with State Stopped: a close whose
// action is stop (unauthorized, forbidden, unsupported version, bad
// request...), where the error wraps the server's *wire.Error; or a
// *PermanentError (an untrusted certificate...). One Run at a time.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.running:
		c.mu.Unlock()
		return errors.New("client: Run is already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c.running, c.cancelRun, c.runDone = true, cancel, done
	c.mu.Unlock()
	defer func() {
		cancel()
		c.mu.Lock()
		c.running, c.cancelRun = false, nil
		c.mu.Unlock()
		close(done)
	}()

	// Notices left by a crash are delivered before anything new.
	if err := c.deliverNotices(ctx); err != nil && ctx.Err() == nil {
		c.log.Error("client: deliver notices", "err", err)
	}
	attempt := 0
	for {
		c.setState(Connecting)
		start := c.clock.Now()
		out := c.session(ctx)
		switch {
		case c.isClosed():
			return ErrClosed
		case ctx.Err() != nil, out.stopped:
			c.setState(Disconnected)
			return nil
		case out.fatal != nil:
			c.setState(Stopped)
			// Run returns the error; logging it louder would report it twice.
			c.log.Debug("client: the server ended the session; not reconnecting", "code", uint32(out.fatal.Code), "err", out.fatal)
			return fmt.Errorf("client: %w", &closedError{out.fatal})
		case out.permanent != nil:
			c.setState(Stopped)
			return fmt.Errorf("client: %w", out.permanent)
		}
		if out.again {
			continue // reconciled: connect again at once, from the new positions
		}
		c.setState(Disconnected)
		if out.welcomed && c.clock.Now().Sub(start) >= c.cfg.StableAfter {
			attempt = 0
		}
		delay := c.backoff(attempt)
		attempt++
		c.log.Info("client: disconnected; reconnecting", "err", out.err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if c.isClosed() {
				return ErrClosed
			}
			return nil
		case <-t.C:
		}
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// backoff returns a delay drawn uniformly below a ceiling that doubles with
// each failed attempt (full jitter), so many devices cut off together do not
// come back together.
func (c *Client) backoff(attempt int) time.Duration {
	ceil := c.cfg.MinBackoff << min(attempt, 30)
	if ceil <= 0 || ceil > c.cfg.MaxBackoff {
		ceil = c.cfg.MaxBackoff
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// deliverNotices calls OnReset, OnGap, OnConflict and OnWriteError for the
// stored notices, oldest first, deleting each once its callback returned.
func (c *Client) deliverNotices(ctx context.Context) error {
	notices, err := loadNotices(ctx, c.db)
	if err != nil {
		return err
	}
	for _, n := range notices {
		switch {
		case n.kind == noticeReset && c.cfg.OnReset != nil:
			c.cfg.OnReset(n.channel)
		case n.kind == noticeGap && c.cfg.OnGap != nil:
			c.cfg.OnGap(n.channel, n.firstSeq)
		case n.kind == noticeConflict && c.cfg.OnConflict != nil:
			var cf Conflict
			if err := json.Unmarshal(n.payload, &cf); err != nil {
				c.log.Error("client: a stored conflict does not decode; dropping it", "err", err)
			} else {
				c.cfg.OnConflict(cf)
			}
		case n.kind == noticeWriteError && c.cfg.OnWriteError != nil:
			var we WriteError
			if err := json.Unmarshal(n.payload, &we); err != nil {
				c.log.Error("client: a stored write error does not decode; dropping it", "err", err)
			} else {
				c.cfg.OnWriteError(we)
			}
		}
		if _, err := c.db.ExecContext(ctx, `DELETE FROM syncpoint_notices WHERE id = ?`, n.id); err != nil {
			return fmt.Errorf("delete notice: %w", err)
		}
	}
	return nil
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
