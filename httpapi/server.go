// Package httpapi serves the business API: publishing, reading and tailing
// channels (the tail's stream is the sse package's), managing bizzes,
// inspecting devices, minting and revoking access tokens, and the health and
// metrics endpoints; and one device route, reconcile by manifest (POST
// /v1/sync/reconcile), which a device token opens.
// Every error leaves through one table that maps syncpoint error codes to
// HTTP status; docs/openapi.yaml describes the routes.
package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/publish"
)

// DefaultMaxBodyBytes caps a request body; it leaves room for a full batch.
const DefaultMaxBodyBytes = 16 << 20

// DefaultBodyTimeout bounds the reading of one request body: a full batch
// arrives well within it from any backend, and a client that trickles a
// body no longer holds a connection and a buffer for as long as it likes.
const DefaultBodyTimeout = time.Minute

// Presence tells whether a device is connected now. The device hub
// implements it.
type Presence interface {
	Online(deviceID string) bool
}

// Config is what a Server needs.
type Config struct {
	Publisher *publish.Publisher
	Store     syncpoint.Store
	Registry  *syncpoint.Registry
	// APIKey is required: with an empty key every /v1 request is refused.
	// It is compared in constant time.
	APIKey     string
	Logger     *slog.Logger          // nil: discard
	Clock      clock.Clock           // nil: clock.Real{}
	Gatherer   prometheus.Gatherer   // served at /metrics; nil: an empty registry
	Registerer prometheus.Registerer // the API's own metrics; nil: none
	// RateLimit is business API requests per second over all clients, as a
	// token bucket of RateBurst; 0 means unlimited.
	RateLimit    float64
	RateBurst    int   // 0: max(1, RateLimit)
	MaxBodyBytes int64 // 0: DefaultMaxBodyBytes
	// BodyTimeout bounds reading a request body, from the handler's start;
	// 0 means DefaultBodyTimeout. Past it the answer is 408.
	BodyTimeout time.Duration
	Presence    Presence
	// Ready backs /readyz; nil means always ready.
	Ready func(context.Context) error
	// OnChannelReset, when set, is called after DELETE /v1/channels reset
	// a channel, so the hub can tell the devices reading it to resync now
	// rather than on the channel's next entry.
	OnChannelReset func(syncpoint.Channel)
	// Backup, when set, writes an online backup of the store to w, for
	// POST /v1/admin/backup; nil: the store has none.
	Backup func(ctx context.Context, w io.Writer) error
	// DeviceRoutes are served beside the API's own routes: the device
	// surfaces of other packages (HTTP sync).
	DeviceRoutes []Route
	// OnTokenRevoked, when set, is called with a token's id once DELETE
	// /v1/tokens/{id} removed it from the store, so that the node forgets
	// it at once: its verifier's cache, and the sessions and streams opened
	// with it (closed with 4001).
	OnTokenRevoked func(tokenID string)
	// DeviceTokens verifies the device tokens of the device routes (POST
	// /v1/sync/reconcile); nil refuses them all.
	DeviceTokens Verifier
	// Tail serves GET /v1/channels/{biz}/{target}/events, an operator's
	// live tail of a channel, once the API key and the channel are checked
	// (the server gives sse.Handler.Tail); nil answers 503.
	Tail func(w http.ResponseWriter, r *http.Request, ch syncpoint.Channel) error
}

// Verifier checks a device token, JWT or opaque, as every device surface
// does.
type Verifier interface {
	Verify(token string) (syncpoint.Claims, error)
}

// Route is a route of a device surface that another package serves on the
// API's mux. It needs no API key and is not under the API's rate limit: its
// handler checks the device's token. It shares the API's metrics, and its
// errors leave through the one table of statuses.
type Route struct {
	Method, Path string // Path in http.ServeMux pattern syntax
	Handle       func(w http.ResponseWriter, r *http.Request) error
	// WriteError, when set, writes an error answer in the route's own body
	// shape with the status and the client-safe error the table gave;
	// nil means the API's {"error": {...}} shape.
	WriteError func(w http.ResponseWriter, r *http.Request, status int, e syncpoint.Error)
}

// Server is the business API. Add it to a mux with Register.
type Server struct {
	publisher      *publish.Publisher
	store          syncpoint.Store
	registry       *syncpoint.Registry
	logger         *slog.Logger
	clock          clock.Clock
	gatherer       prometheus.Gatherer
	limiter        *rate.Limiter // nil: unlimited
	maxBody        int64
	bodyTimeout    time.Duration
	presence       Presence
	ready          func(context.Context) error
	onReset        func(syncpoint.Channel)
	backup         func(context.Context, io.Writer) error
	onRevoke       func(string)
	devices        Verifier
	tail           func(http.ResponseWriter, *http.Request, syncpoint.Channel) error
	keyHash        [sha256.Size]byte
	keySet         bool
	metrics        *apiMetrics // nil: no metrics
	routes         []route
	deviceRoutes   []Route
	metricsHandler http.Handler
	bufs           sync.Pool // *bytes.Buffer for request bodies
}

// route is one method and path of the API.
type route struct {
	method string
	path   string // http.ServeMux pattern syntax
	auth   bool   // needs the API key and counts against the rate limit
	handle func(w http.ResponseWriter, r *http.Request) error
}

// New returns a Server. Its routes are served once Register adds them to a
// mux.
func New(cfg Config) *Server {
	s := &Server{
		publisher:   cfg.Publisher,
		store:       cfg.Store,
		registry:    cfg.Registry,
		logger:      cfg.Logger,
		clock:       cfg.Clock,
		gatherer:    cfg.Gatherer,
		maxBody:     cfg.MaxBodyBytes,
		bodyTimeout: cfg.BodyTimeout,
		presence:    cfg.Presence,
		ready:       cfg.Ready,
		onReset:     cfg.OnChannelReset,
		backup:      cfg.Backup,
		onRevoke:    cfg.OnTokenRevoked,
		devices:     cfg.DeviceTokens,
		tail:        cfg.Tail,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	if s.gatherer == nil {
		s.gatherer = prometheus.NewRegistry()
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.bodyTimeout <= 0 {
		s.bodyTimeout = DefaultBodyTimeout
	}
	if cfg.APIKey != "" {
		s.keyHash = sha256.Sum256([]byte(cfg.APIKey))
		s.keySet = true
	} else {
		s.logger.Warn("httpapi: no API key configured; every /v1 request will be refused")
	}
	if cfg.RateLimit > 0 {
		burst := cfg.RateBurst
		if burst <= 0 {
			burst = int(math.Max(1, cfg.RateLimit))
		}
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), burst)
	}
	if cfg.Registerer != nil {
		s.metrics = newAPIMetrics(cfg.Registerer)
	}
	s.metricsHandler = promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelError),
	})
	s.bufs.New = func() any { return new(bytes.Buffer) }
	s.routes = []route{
		{"POST", "/v1/publish", true, s.handlePublish},
		{"POST", "/v1/publish/batch", true, s.handlePublishBatch},
		{"GET", "/v1/channels/{biz}/{target}", true, s.handleReadChannel},
		{"DELETE", "/v1/channels/{biz}/{target}", true, s.handleResetChannel},
		{"GET", "/v1/channels/{biz}/{target}/events", true, s.handleTailChannel},
		{"GET", "/v1/bizzes", true, s.handleListBizzes},
		{"GET", "/v1/bizzes/{name}", true, s.handleGetBiz},
		{"PUT", "/v1/bizzes/{name}", true, s.handlePutBiz},
		{"DELETE", "/v1/bizzes/{name}", true, s.handleDeleteBiz},
		{"GET", "/v1/devices/{id}", true, s.handleGetDevice},
		{"GET", "/v1/users/{id}/devices", true, s.handleUserDevices},
		{"POST", "/v1/tokens", true, s.handleMintToken},
		{"GET", "/v1/users/{id}/tokens", true, s.handleUserTokens},
		{"DELETE", "/v1/tokens/{id}", true, s.handleRevokeToken},
		{"POST", reconcilePath, false, s.handleReconcile},
		{"POST", "/v1/admin/backup", true, s.handleBackup},
		{"GET", "/healthz", false, s.handleHealth},
		{"GET", "/readyz", false, s.handleReady},
		{"GET", "/metrics", false, s.handleMetrics},
	}
	s.deviceRoutes = cfg.DeviceRoutes
	return s
}

// Register adds the API's routes to mux, and "/" as the JSON answer for
// every request no route takes: 405 with an Allow header when the path is
// served with other methods (by any package's routes on mux), else 404.
// The device transports add their own routes to the same mux.
func (s *Server) Register(mux *http.ServeMux) {
	for _, rt := range s.routes {
		mux.Handle(rt.method+" "+rt.path, s.wrap(rt, nil))
	}
	for _, dr := range s.deviceRoutes {
		mux.Handle(dr.Method+" "+dr.Path, s.wrap(route{method: dr.Method, path: dr.Path, handle: dr.Handle}, dr.WriteError))
	}
	mux.Handle("/", s.wrap(route{path: "/", handle: func(w http.ResponseWriter, r *http.Request) error {
		return unmatched(mux, w, r)
	}}, nil))
}

// DevicePaths are the paths of the device routes Register adds (reconcile
// and the DeviceRoutes), as ServeMux patterns without a method: the
// endpoints a device's token opens, which browser pages on allowed origins
// may call (CORS).
func (s *Server) DevicePaths() []string {
	paths := []string{reconcilePath}
	for _, dr := range s.deviceRoutes {
		paths = append(paths, dr.Path)
	}
	return paths
}

// probeMethods are the methods tried to tell a 405 from a 404.
var probeMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}

func unmatched(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range probeMethods {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		return syncpoint.Errorf(syncpoint.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path)
	}
	list := strings.Join(allow, ", ")
	w.Header().Set("Allow", list)
	return &statusError{http.StatusMethodNotAllowed, syncpoint.Error{
		Code:    "method_not_allowed",
		Message: "method " + r.Method + " is not allowed on " + r.URL.Path + "; use " + list,
	}}
}

// statusError is an error response whose status is not one of an error
// code's (405 and 408).
type statusError struct {
	status int
	body   syncpoint.Error
}

func (e *statusError) Error() string { return e.body.Error() }

// errorWriter writes an error answer in a route's own body shape.
type errorWriter func(w http.ResponseWriter, r *http.Request, status int, e syncpoint.Error)

// wrap adds authentication, rate limiting, metrics and error handling to a
// route's handler; own, when set, writes its error answers.
func (s *Server) wrap(rt route, own errorWriter) http.Handler {
	label := rt.path
	if rt.method != "" {
		label = rt.method + " " + rt.path
	}
	var inst *routeMetrics
	if s.metrics != nil {
		inst = s.metrics.route(label)
	}
	if inst == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.serve(w, r, rt, own)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.clock.Now()
		rec := statusRecorder{ResponseWriter: w}
		s.serve(&rec, r, rt, own)
		inst.observe(rec.status, s.clock.Now().Sub(start))
	})
}

// serve runs a route's handler behind the API key and the rate limit, and
// answers its error.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, rt route, own errorWriter) {
	var err error
	if rt.auth {
		err = s.authenticate(r)
		if err == nil {
			err = s.allow(w)
		}
	}
	if err == nil {
		err = rt.handle(w, r)
	}
	if err == nil {
		return
	}
	var se *statusError
	switch {
	case errors.As(err, &se) && own != nil:
		own(w, r, se.status, se.body)
	case errors.As(err, &se):
		writeJSON(w, se.status, apiclient.ErrorResponse{Error: se.body})
	default:
		s.writeError(w, r, err, own)
	}
}

func (s *Server) authenticate(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return syncpoint.Errorf(syncpoint.CodeUnauthorized, "missing Authorization header; want Bearer <api key>")
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return syncpoint.Errorf(syncpoint.CodeUnauthorized, "Authorization header: want Bearer <api key>")
	}
	// Hashing first makes the comparison independent of the key's length.
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if !s.keySet || subtle.ConstantTimeCompare(sum[:], s.keyHash[:]) != 1 {
		return syncpoint.Errorf(syncpoint.CodeUnauthorized, "invalid API key")
	}
	return nil
}

func (s *Server) allow(w http.ResponseWriter) error {
	if s.limiter == nil {
		return nil
	}
	now := s.clock.Now()
	res := s.limiter.ReserveN(now, 1)
	if !res.OK() {
		return syncpoint.Errorf(syncpoint.CodeRateLimited, "rate limit exceeded")
	}
	delay := res.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	res.CancelAt(now)
	secs := int64(math.Ceil(delay.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	return syncpoint.Errorf(syncpoint.CodeRateLimited, "rate limit exceeded; retry in %ds", secs)
}

// statusRecorder remembers the status a handler wrote, for metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// readBody reads the capped request body into a pooled buffer; call done
// when the bytes are no longer used.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body []byte, done func(), err error) {
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	done = func() {
		if buf.Cap() <= 1<<20 {
			s.bufs.Put(buf)
		}
	}
	// The server's ReadTimeout would bound this too, but it also cuts the
	// connection's reads after the body, which cancels a handler still at
	// work; a deadline for the body alone, lifted once it is read, does not.
	// After a failed read it stays, so that the server does not wait for
	// the rest of the body either.
	// A socket deadline is wall-clock time, whatever the server's clock.
	rc := http.NewResponseController(w)
	timed := rc.SetReadDeadline(time.Now().Add(s.bodyTimeout)) == nil
	_, err = buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.maxBody))
	if timed && err == nil {
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		done()
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			return nil, nil, syncpoint.Errorf(syncpoint.CodeTooLarge, "the body is over the limit of %d bytes", mbe.Limit)
		case errors.As(err, &ne) && ne.Timeout():
			w.Header().Set("Connection", "close")
			return nil, nil, &statusError{http.StatusRequestTimeout, syncpoint.Error{
				Code:    "request_timeout",
				Message: "the body did not arrive within " + s.bodyTimeout.String(),
			}}
		}
		return nil, nil, syncpoint.Errorf(syncpoint.CodeMalformed, "reading the body failed")
	}
	return buf.Bytes(), done, nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	writeBody(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	return nil
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) error {
	if s.ready != nil {
		if err := s.ready(r.Context()); err != nil {
			s.logger.Warn("httpapi: not ready", "err", err)
			var se *syncpoint.Error
			if errors.As(err, &se) {
				return syncpoint.Errorf(syncpoint.CodeUnavailable, "%s", se.Message)
			}
			return syncpoint.Errorf(syncpoint.CodeUnavailable, "not ready")
		}
	}
	writeBody(w, http.StatusOK, []byte(`{"status":"ready"}`+"\n"))
	return nil
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metricsHandler.ServeHTTP(w, r)
	return nil
}

// now is the server's clock, for reads that skip expired entries.
func (s *Server) now() time.Time { return s.clock.Now() }
