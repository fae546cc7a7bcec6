package httpsync

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/internal/keylock"
	"github.com/syncpoint/syncpoint/wire"
)

// Defaults for Config, and the fixed limits of the forms.
const (
	// DefaultSessionIdle is how long a queue session lives without a
	// request; after it the session is unknown_session.
	DefaultSessionIdle = 10 * time.Minute
	// DefaultMaxSessionsPerToken bounds the open queue sessions started
	// with one token (one per device; a token shared by devices opens
	// more).
	DefaultMaxSessionsPerToken = 16
	// DefaultMaxWait caps a one-shot long-poll.
	DefaultMaxWait = 60 * time.Second
	// DefaultMaxBodyBytes caps a request body.
	DefaultMaxBodyBytes = 16 << 20
	// DefaultBodyTimeout bounds the arrival of a request body.
	DefaultBodyTimeout = time.Minute
	// DefaultMaxPageBytes bounds the entry data of one queue page or
	// one-shot answer (at least one entry always goes).
	DefaultMaxPageBytes = 4 << 20
	// DefaultMaxPendingAcks bounds, per device and channel, the acks kept
	// above a hole (an item not acked yet). Past it the newest are
	// forgotten: their items come again, which a client must take anyway.
	DefaultMaxPendingAcks = 100_000

	// DefaultLimit and MaxLimit are a queue page's and a one-shot answer's
	// entries: what a client gets without asking, and the most it may ask.
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Verifier checks a device token; it is the hub's, so a token good for a
// socket is good here and one refused there is refused here.
type Verifier interface {
	Verify(token string) (syncpoint.Claims, error)
}

// RecordWriter applies record uploads through the same path as the
// socket's write frame (records.Service).
type RecordWriter interface {
	Write(ctx context.Context, id syncpoint.Identity, w *wire.Write) *wire.WriteResult
}

// Config configures a Handler. Store, Registry, Feed and Verifier are
// required; the zero value of every other field means its default.
type Config struct {
	Store    syncpoint.Store
	Registry *syncpoint.Registry
	// Feed is the one every device surface reads through, so sync points
	// and conditions follow the socket's rules.
	Feed     *feed.Feed
	Verifier Verifier
	Records  RecordWriter // nil: uploads are refused
	Clock    clock.Clock
	Logger   *slog.Logger
	// Registerer takes the handler's metrics; nil registers none.
	Registerer prometheus.Registerer

	SessionIdle         time.Duration
	MaxSessionsPerToken int
	// TokenRate is requests per second per token over every HTTP sync
	// form, as a token bucket of TokenBurst; 0 means unlimited.
	TokenRate      float64
	TokenBurst     int
	MaxWait        time.Duration
	MaxBodyBytes   int64
	BodyTimeout    time.Duration
	MaxPageBytes   int
	MaxPendingAcks int
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SessionIdle <= 0 {
		c.SessionIdle = DefaultSessionIdle
	}
	if c.MaxSessionsPerToken <= 0 {
		c.MaxSessionsPerToken = DefaultMaxSessionsPerToken
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.MaxPageBytes <= 0 {
		c.MaxPageBytes = DefaultMaxPageBytes
	}
	if c.MaxPendingAcks <= 0 {
		c.MaxPendingAcks = DefaultMaxPendingAcks
	}
	if c.TokenBurst <= 0 {
		c.TokenBurst = max(1, int(c.TokenRate))
	}
}

// Handler serves the HTTP sync forms. Add its Routes to the API's mux.
type Handler struct {
	cfg     Config
	store   syncpoint.Store
	reg     *syncpoint.Registry
	clock   clock.Clock
	log     *slog.Logger
	metrics *metrics

	secretMu sync.Mutex
	secret   []byte // loaded or made on first use; see secret.go

	tokens tokenLimits
	// devices serializes the starts and acks of one device, whose acks
	// are one blob; sessions serializes the pages of one session.
	devices  keylock.Set
	sessions keylock.Set
	lives    lives

	// stopping ends long-polls at once, so a shutdown need not wait for
	// them to run out.
	stopping chan struct{}
	stopOnce sync.Once
}

// New returns a Handler; it reads nothing from the store until a request
// needs it.
func New(cfg Config) *Handler {
	cfg.setDefaults()
	return &Handler{
		cfg:      cfg,
		store:    cfg.Store,
		reg:      cfg.Registry,
		clock:    cfg.Clock,
		log:      cfg.Logger,
		metrics:  newMetrics(cfg.Registerer),
		tokens:   tokenLimits{m: make(map[string]*tokenState)},
		stopping: make(chan struct{}),
	}
}

// Route is one route of the HTTP sync surface, in the shape of
// httpapi.Route, which it converts to.
type Route struct {
	Method, Path string
	Handle       func(w http.ResponseWriter, r *http.Request) error
	// WriteError writes an error answer in the route's own body shape; nil
	// means the API's.
	WriteError func(w http.ResponseWriter, r *http.Request, status int, e syncpoint.Error)
}

// Routes returns every route of the surface: the /v1 forms and the /v2
// drop-in encoding.
func (h *Handler) Routes() []Route {
	return []Route{
		{Method: "POST", Path: "/v1/write", Handle: h.handleWrite},
		{Method: "POST", Path: "/v1/sync", Handle: h.handleSync},
		{Method: "POST", Path: "/v1/sync/start", Handle: h.handleStart},
		{Method: "GET", Path: "/v1/sync/{session}/queue", Handle: h.handleQueue},
		{Method: "POST", Path: "/v1/sync/ack", Handle: h.handleAck},
		{Method: "POST", Path: "/v2/sync/start", Handle: h.handleV2Start, WriteError: h.writeV2Error},
		{Method: "GET", Path: "/v2/sync/{id}/queues/{queue}", Handle: h.handleV2Queue, WriteError: h.writeV2Error},
		{Method: "POST", Path: "/v2/sync/ack", Handle: h.handleV2Ack, WriteError: h.writeV2Error},
	}
}

// Shutdown ends the long-polls in flight, which answer at once with what
// they have; call it when the server stops accepting requests.
func (h *Handler) Shutdown() {
	h.stopOnce.Do(func() { close(h.stopping) })
}

// Close ends the long-polls and releases the streams kept for sessions;
// the sessions themselves stay in the store.
func (h *Handler) Close() error {
	h.Shutdown()
	h.lives.closeAll()
	return nil
}

// noStore marks an answer as one no cache may keep or replay.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
}
