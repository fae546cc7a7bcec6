// Package server assembles a syncpoint node: it opens the store, loads the
// bizzes, builds the publisher, the device session hub, the business API and
// the record writer, binds the HTTP (API, WebSocket) and raw TCP listeners,
// sweeps expired entries, and shuts all of it down in order.
//
// It reads no flags, files or environment: cmd/syncpoint fills a Config.
// Tests start the real thing in-process on 127.0.0.1:0.
package server

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/console"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/httpapi"
	"github.com/syncpoint/syncpoint/httpsync"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/nats"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/postgres"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/records"
	"github.com/syncpoint/syncpoint/sse"
	"github.com/syncpoint/syncpoint/tcp"
	"github.com/syncpoint/syncpoint/ws"
)

// Defaults filled in by New.
const (
	DefaultListen            = "127.0.0.1:7420"
	DefaultSweepInterval     = time.Minute
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	// StoreDir is where the embedded store lives inside DataDir.
	StoreDir = "store"
)

// Config is what a Server needs. The zero value of each optional field
// means its Default* constant.
type Config struct {
	// DataDir holds the embedded store (in DataDir/StoreDir). Required
	// unless StoreURL names an external store.
	DataDir string
	// Listen is the HTTP address (business API, WebSocket devices); ""
	// means DefaultListen, port 0 picks a free port.
	Listen string
	// TCPListen is the raw TCP device address; "" means no TCP listener.
	TCPListen string
	// TLSCert and TLSKey are PEM files; given together, both listeners
	// speak TLS (HTTPS with HTTP/2 and wss:// on Listen), and the files are
	// loaded again when they change and on ReloadTLS.
	TLSCert, TLSKey string
	// PlainHTTP keeps the HTTP listener plain despite TLSCert, for a
	// TLS-terminating proxy in front of it; the TCP listener still speaks
	// TLS.
	PlainHTTP bool
	// TLSCheckInterval is how often the certificate files are checked for
	// a change; 0 means DefaultTLSCheckInterval.
	TLSCheckInterval time.Duration
	// StoreURL is "" for the embedded store, or a postgres:// (or
	// postgresql://) URL for the PostgreSQL store, which several nodes
	// share.
	StoreURL string
	// NATSURL is "" for a single node, or a nats:// URL for fan-out
	// between nodes, which then share StoreURL's PostgreSQL store.
	NATSURL string
	// Cluster names the cluster: the prefix of its NATS subjects, so that
	// several clusters can share one NATS; "" means "syncpoint".
	Cluster string
	// NodeID names this node in its log lines, its metrics and the
	// cluster's directory; "" means the host name and a random suffix.
	NodeID string
	// HeadCheckInterval is how often a node of a cluster checks the heads
	// of its devices' channels against the store, to find entries whose
	// broker message was lost; 0 means DefaultHeadCheckInterval.
	HeadCheckInterval time.Duration
	// APIKey guards the business API; TokenSecret verifies device tokens
	// (HS256). Both are required.
	APIKey      string
	TokenSecret string
	// TokenPublicKey, when set, is a PEM RSA (RS256) or P-256 (ES256)
	// public key that device tokens may be signed with instead, so a
	// backend can mint tokens without sharing a secret.
	TokenPublicKey []byte
	// Bizzes come from the config file; they win over stored ones.
	Bizzes []syncpoint.Biz
	Logger *slog.Logger // nil: discard
	Clock  clock.Clock  // nil: clock.Real{}
	// RateLimit is business API requests per second (0: unlimited) with a
	// burst of RateBurst.
	RateLimit    float64
	RateBurst    int
	MaxBodyBytes int64 // 0: httpapi.DefaultMaxBodyBytes
	// BodyTimeout bounds reading one request body; 0 means
	// httpapi.DefaultBodyTimeout.
	BodyTimeout time.Duration
	// MaxTargets bounds the targets of one publish; 0 means
	// publish.DefaultMaxTargets.
	MaxTargets int
	// SweepInterval is how often expired entries are deleted.
	SweepInterval time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight requests
	// once its context is done; the store still finishes its commits.
	ShutdownTimeout   time.Duration
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// HeartbeatInterval is how often device sessions are pinged; 0 means
	// hub.DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// SSEHeartbeat is how often an idle event stream gets a comment line;
	// 0 means sse.DefaultHeartbeat.
	SSEHeartbeat time.Duration
	// SendQueue bounds the live entries queued per device connection; 0
	// means hub.DefaultQueueLimit.
	SendQueue int
	// MaxFrameBytes bounds one frame from a device; 0 means
	// wire.DefaultMaxFrameBytes.
	MaxFrameBytes int
	// AllowedOrigins lists the origins of browser pages, other than the
	// server's own, that may use the device endpoints (httpapi.CheckOrigins
	// has the patterns; "*" is any origin). When set, the WebSocket
	// endpoint refuses pages of other origins, and the HTTP device
	// endpoints (sync, SSE, uploads, reconcile) answer CORS preflights and
	// send Access-Control-Allow-Origin to the listed ones. Unset, the
	// WebSocket endpoint takes every origin (devices prove who they are
	// with the token in their hello, not with cookies) and the HTTP device
	// endpoints send no CORS headers, so browsers let only same-origin
	// pages read them. The business API never answers other origins.
	AllowedOrigins []string
	// PprofListen, when set, serves Go's profiler at /debug/pprof/ on its
	// own address, never on the API's, so it can stay on loopback.
	PprofListen string

	// HTTP sync (docs/http-sync.md); 0 means httpsync's default.
	// SyncSessionIdle is how long a queue session lives without a
	// request; SyncSessionsPerToken bounds the open sessions of one
	// token; SyncTokenRate is requests per second per token (0:
	// unlimited); SyncMaxWait caps a one-shot long-poll.
	SyncSessionIdle      time.Duration
	SyncSessionsPerToken int
	SyncTokenRate        float64
	SyncMaxWait          time.Duration

	storeFS vfs.FS // the embedded store's filesystem; tests inject faults
}

// Server is one running syncpoint node.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	clock    clock.Clock
	metrics  *prometheus.Registry
	store    syncpoint.Store
	broker   syncpoint.Broker
	registry *syncpoint.Registry
	// The cluster's presence directory (nil on one node) and run-once
	// leases (local.Leases on one node), and the repair loops' wake-ups.
	directory syncpoint.Directory
	leases    syncpoint.Leases
	headCheck chan struct{}
	bizCheck  chan struct{}
	pub       *publish.Publisher
	api       *httpapi.Server
	feed      *feed.Feed
	hub       *hub.Hub
	events    *sse.Handler
	records   *records.Service
	sync      *httpsync.Handler

	// jwt verifies device JWTs and opaque verifies opaque access tokens;
	// tokens verifies either kind, and every device surface takes it, so
	// that a token good on one is good on all.
	jwt    *auth.Verifier
	opaque *auth.Opaque
	tokens auth.Tokens

	// mux serves the business API; the device transports (WebSocket, SSE,
	// HTTP sync) add their routes to it too.
	mux  *http.ServeMux
	http *http.Server
	ln   net.Listener
	// tcpLn is bound in New (and TLS-wrapped when certs is set); the TCP
	// transport takes its connections in serveTCP.
	tcpLn   net.Listener
	pprofLn net.Listener
	certs   *certs // nil without TLS
	// httpTLS is set when the HTTP listener speaks TLS.
	httpTLS bool
	// closers are closed in reverse order after the listeners stop and
	// before the broker and the store close: the hub and transports go here.
	closers []io.Closer
	// runners run beside the listeners until Run's context is done (the
	// hub's Run goes here); an error from one shuts the server down.
	runners []func(context.Context) error
	dirLock io.Closer // held until the store is closed

	sweeps      prometheus.Counter
	sweepErrors prometheus.Counter
	stopping    atomic.Bool
	running     atomic.Bool
	closing     chan struct{} // closed by Close to stop Run
	runDone     chan struct{} // closed when Run returns
	stopOnce    sync.Once
	closeOnce   sync.Once
	closeErr    error
}

// New opens the store, loads the bizzes, builds the API and binds the
// listeners, so Addr is known when it returns. On error everything it
// opened is closed again.
func New(cfg Config) (_ *Server, err error) {
	// Zero means the default; a negative value is a mistake, not a default.
	if cfg.SendQueue < 0 || cfg.MaxFrameBytes < 0 || min(cfg.HeartbeatInterval, cfg.ShutdownTimeout, cfg.SweepInterval, cfg.ReadHeaderTimeout, cfg.IdleTimeout, cfg.BodyTimeout, cfg.HeadCheckInterval) < 0 {
		return nil, errors.New("server: no size, interval or timeout may be negative")
	}
	if err := httpapi.CheckOrigins(cfg.AllowedOrigins); err != nil {
		return nil, fmt.Errorf("server: allowed origins: %w", err)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = defaultNodeID()
	}
	cfg.Logger = cfg.Logger.With("node", cfg.NodeID)
	if cfg.HeadCheckInterval <= 0 {
		cfg.HeadCheckInterval = DefaultHeadCheckInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.APIKey == "" {
		return nil, errors.New("server: no API key configured")
	}
	if cfg.RateLimit < 0 || cfg.RateBurst < 0 || cfg.MaxBodyBytes < 0 || cfg.MaxTargets < 0 {
		return nil, errors.New("server: rate limit, burst, body limit and target limit must not be negative")
	}
	if cfg.SyncSessionIdle < 0 || cfg.SyncSessionsPerToken < 0 || cfg.SyncTokenRate < 0 || cfg.SyncMaxWait < 0 {
		return nil, errors.New("server: the HTTP sync settings must not be negative")
	}
	s := &Server{
		cfg:       cfg,
		logger:    cfg.Logger,
		clock:     cfg.Clock,
		metrics:   prometheus.NewRegistry(),
		mux:       http.NewServeMux(),
		closing:   make(chan struct{}),
		runDone:   make(chan struct{}),
		headCheck: make(chan struct{}, 1),
		bizCheck:  make(chan struct{}, 1),
	}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	s.jwt, err = auth.NewVerifier(auth.VerifierConfig{Secret: []byte(cfg.TokenSecret), PublicKeyPEM: cfg.TokenPublicKey, Clock: cfg.Clock})
	if err != nil {
		return nil, fmt.Errorf("server: token secret: %w", err)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errNoTLS
	}
	if cfg.TLSCert != "" {
		if s.certs, err = loadCerts(cfg.TLSCert, cfg.TLSKey, s.logger); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		s.httpTLS = !cfg.PlainHTTP
		interval := cmp.Or(cfg.TLSCheckInterval, DefaultTLSCheckInterval)
		s.runners = append(s.runners, func(ctx context.Context) error { return s.certs.watch(ctx, interval) })
	}

	s.metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	s.sweeps = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "syncpoint_sweeps_total", Help: "Sweeps of expired entries started.",
	})
	s.sweepErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "syncpoint_sweep_errors_total", Help: "Sweeps of expired entries that failed.",
	})
	s.metrics.MustRegister(s.sweeps, s.sweepErrors)

	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("server: create data dir: %w", err)
		}
		if s.dirLock, err = lockDir(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if s.store, err = s.openStore(); err != nil {
		return nil, err
	}
	if s.broker, err = s.openBroker(); err != nil {
		return nil, err
	}
	s.setUpCluster()
	s.opaque = auth.NewOpaque(auth.OpaqueConfig{Store: s.store, Clock: s.clock})
	s.tokens = auth.Tokens{JWT: s.jwt, Opaque: s.opaque}
	s.registry = syncpoint.NewRegistry(s.store)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.registry.Load(ctx, cfg.Bizzes); err != nil {
		return nil, fmt.Errorf("server: load bizzes: %w", err)
	}
	s.pub = publish.New(publish.Config{
		Store:      s.store,
		Broker:     s.broker,
		Registry:   s.registry,
		Clock:      s.clock,
		Registerer: s.metrics,
		Logger:     s.logger,
		MaxTargets: cfg.MaxTargets,
	})
	s.records = records.New(records.Config{
		Publisher:  s.pub,
		Store:      s.store,
		Registry:   s.registry,
		Clock:      s.clock,
		Logger:     s.logger,
		Registerer: s.metrics,
	})
	s.runners = append(s.runners, func(ctx context.Context) error {
		// At least once and in order across a node's death: one node
		// delivers at a time, from the cursor in the store.
		return s.leases.Run(ctx, "notify", func(ctx context.Context) { s.records.Run(ctx) })
	})
	// One feed for every device surface, so sync points, user positions and
	// revocations are shared between them.
	s.feed = feed.New(feed.Config{
		Store:      s.store,
		Registry:   s.registry,
		Clock:      s.clock,
		Logger:     s.logger,
		Registerer: s.metrics,
		QueueLimit: cfg.SendQueue,
	})
	s.closers = append(s.closers, s.feed)
	s.runners = append(s.runners, s.feed.Run)
	unsubscribeFeed, err := s.broker.Subscribe(s.feed.Deliver)
	if err != nil {
		return nil, fmt.Errorf("server: subscribe feed: %w", err)
	}
	s.closers = append(s.closers, closerFunc(func() error { unsubscribeFeed(); return nil }))
	hubCfg := hub.Config{
		Store:             s.store,
		Registry:          s.registry,
		Verifier:          s.tokens,
		Feed:              s.feed,
		Records:           s.records,
		Clock:             s.clock,
		Logger:            s.logger,
		Registerer:        s.metrics,
		HeartbeatInterval: cfg.HeartbeatInterval,
		QueueLimit:        cfg.SendQueue,
		Node:              cfg.NodeID,
	}
	if s.clustered() {
		hubCfg.Broker, hubCfg.Directory = s.broker, s.directory
	}
	s.hub = hub.New(hubCfg)
	unsubscribe, err := s.broker.Subscribe(s.hub.Deliver)
	if err != nil {
		return nil, fmt.Errorf("server: subscribe hub: %w", err)
	}
	s.closers = append(s.closers, closerFunc(func() error { unsubscribe(); return nil }))
	s.runners = append(s.runners, s.hub.Run)
	stopListen, err := s.broker.Listen(s.handleEvent)
	if err != nil {
		return nil, fmt.Errorf("server: listen for cluster events: %w", err)
	}
	s.closers = append(s.closers, closerFunc(func() error { stopListen(); return nil }))
	if s.clustered() {
		stopBiz := s.registry.OnChange(func(name string) { s.announce(syncpoint.Event{Kind: syncpoint.EventBiz, Biz: name}) })
		s.closers = append(s.closers, closerFunc(func() error { stopBiz(); return nil }))
	}
	s.runners = append(s.runners, s.clusterLoop)
	s.sync = httpsync.New(httpsync.Config{
		Store:               s.store,
		Registry:            s.registry,
		Feed:                s.feed,
		Verifier:            s.tokens,
		Records:             s.records,
		Clock:               s.clock,
		Logger:              s.logger,
		Registerer:          s.metrics,
		SessionIdle:         cfg.SyncSessionIdle,
		MaxSessionsPerToken: cfg.SyncSessionsPerToken,
		TokenRate:           cfg.SyncTokenRate,
		MaxWait:             cfg.SyncMaxWait,
		MaxBodyBytes:        cfg.MaxBodyBytes,
		BodyTimeout:         cfg.BodyTimeout,
	})
	s.closers = append(s.closers, s.sync)
	var deviceRoutes []httpapi.Route
	for _, rt := range s.sync.Routes() {
		deviceRoutes = append(deviceRoutes, httpapi.Route(rt))
	}
	s.events, err = sse.New(sse.Config{
		Feed:       s.feed,
		Registry:   s.registry,
		Verifier:   s.tokens,
		Key:        eventIDKey(cfg),
		Logger:     s.logger,
		Clock:      s.clock,
		Registerer: s.metrics,
		Heartbeat:  cfg.SSEHeartbeat,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.api = httpapi.New(httpapi.Config{
		Publisher:      s.pub,
		Store:          s.store,
		Registry:       s.registry,
		APIKey:         cfg.APIKey,
		Logger:         s.logger,
		Clock:          s.clock,
		Gatherer:       s.metrics,
		Registerer:     s.metrics,
		RateLimit:      cfg.RateLimit,
		RateBurst:      cfg.RateBurst,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		BodyTimeout:    cfg.BodyTimeout,
		Presence:       presence{s.hub, s.events, s.directory},
		OnChannelReset: s.resetChannel,
		OnTokenRevoked: s.revokeToken,
		DeviceTokens:   s.tokens,
		Ready:          s.ready,
		Backup:         s.backup(),
		DeviceRoutes:   deviceRoutes,
		Tail:           s.events.Tail,
	})
	s.api.Register(s.mux)
	s.mux.Handle("GET /v1/connect", httpapi.JSONErrors(&ws.Handler{Hub: s.hub, Logger: s.logger, MaxFrameBytes: int64(cfg.MaxFrameBytes), OriginPatterns: cfg.AllowedOrigins}))
	s.mux.Handle("GET /v1/events", s.events)
	con, err := console.New()
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	con.Register(s.mux)
	// Browser pages on the allowed origins may call the HTTP device
	// endpoints; the WebSocket endpoint checks origins itself.
	handler := httpapi.CORS(cfg.AllowedOrigins, append(s.api.DevicePaths(), "/v1/events"), s.mux)

	s.http = &http.Server{
		Handler:           httpapi.Canonical(handler),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	// Long-polls answer at once when shutdown starts, rather than holding
	// it up for as long as they were asked to wait.
	s.http.RegisterOnShutdown(s.sync.Shutdown)
	if s.httpTLS {
		// HTTP/2 for the business API. A WebSocket client asks for
		// http/1.1 in its handshake (an upgrade needs it), and gets it.
		s.http.TLSConfig = s.certs.config("h2", "http/1.1")
	}
	// Shutdown waits for handlers, and an event stream's would not end on
	// its own.
	s.http.RegisterOnShutdown(s.events.Close)
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("server: listen %s: %w", cfg.Listen, err)
	}
	if cfg.PprofListen != "" {
		if s.pprofLn, err = net.Listen("tcp", cfg.PprofListen); err != nil {
			return nil, fmt.Errorf("server: pprof listen %s: %w", cfg.PprofListen, err)
		}
		s.runners = append(s.runners, s.servePprof)
	}
	if cfg.TCPListen != "" {
		if s.tcpLn, err = net.Listen("tcp", cfg.TCPListen); err != nil {
			return nil, fmt.Errorf("server: tcp listen %s: %w", cfg.TCPListen, err)
		}
		if s.certs != nil {
			s.tcpLn = tls.NewListener(s.tcpLn, s.certs.config())
		}
	}
	return s, nil
}

// openStore opens the store StoreURL names.
func (s *Server) openStore() (syncpoint.Store, error) {
	if s.cfg.StoreURL == "" {
		if s.cfg.DataDir == "" {
			return nil, errors.New("server: no data dir for the embedded store")
		}
		dir := filepath.Join(s.cfg.DataDir, StoreDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("server: create store dir: %w", err)
		}
		st, err := pebble.Open(dir, pebble.Options{Clock: s.clock, Logger: s.logger, Registerer: s.metrics, FS: s.cfg.storeFS})
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		return st, nil
	}
	u, err := url.Parse(s.cfg.StoreURL)
	if err != nil {
		return nil, fmt.Errorf("server: store URL: %w", redactURLError(err))
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := postgres.Open(ctx, s.cfg.StoreURL, postgres.Options{Clock: s.clock, Logger: s.logger, Registerer: s.metrics})
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		// Host and database only: a password may be in the user info or in
		// the query (password=…).
		s.logger.Info("store: PostgreSQL", "host", u.Host, "database", strings.TrimPrefix(u.Path, "/"))
		return st, nil
	}
	return nil, fmt.Errorf("server: store URL scheme %q: want postgres:// or nothing for the embedded store", u.Scheme)
}

// openBroker returns the in-process broker for a single node, or the NATS
// broker of a cluster, whose nodes must share a PostgreSQL store.
func (s *Server) openBroker() (syncpoint.Broker, error) {
	if s.cfg.NATSURL == "" {
		return local.New(), nil
	}
	if _, ok := s.store.(*postgres.Store); !ok {
		return nil, errors.New("server: a cluster (--nats) needs a store its nodes share: give --store postgres://…")
	}
	u, err := url.Parse(s.cfg.NATSURL)
	if err != nil {
		return nil, fmt.Errorf("server: NATS URL: %w", redactURLError(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := nats.Open(ctx, s.cfg.NATSURL, nats.Options{Node: s.cfg.NodeID, Subject: s.cfg.Cluster, Logger: s.logger, Registerer: s.metrics})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.logger.Info("broker: NATS", "host", u.Host, "cluster", s.cfg.Cluster)
	return b, nil
}

// redactURLError keeps a password in a store URL out of error messages.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New(ue.Err.Error())
	}
	return err
}

// Addr returns the HTTP listener's address, with the real port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the HTTP listener's base URL: https:// when it speaks TLS.
func (s *Server) URL() string {
	if s.httpTLS {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// TCPAddr returns the raw TCP listener's address, or "" when there is none.
func (s *Server) TCPAddr() string {
	if s.tcpLn == nil {
		return ""
	}
	return s.tcpLn.Addr().String()
}

// Registry returns the bizzes the server serves.
func (s *Server) Registry() *syncpoint.Registry { return s.registry }

// Verifier returns the device JWT verifier; device surfaces verify with
// DeviceTokens, which takes opaque tokens too.
func (s *Server) Verifier() *auth.Verifier { return s.jwt }

// DeviceTokens verifies device tokens of either kind, as every device
// surface does.
func (s *Server) DeviceTokens() auth.Tokens { return s.tokens }

// ready backs /readyz: not ready once shutdown starts, so load balancers
// drain the node first, nor while the store takes no writes.
func (s *Server) ready(ctx context.Context) error {
	if s.stopping.Load() {
		return syncpoint.Errorf(syncpoint.CodeUnavailable, "shutting down")
	}
	if err := s.store.Health(ctx); err != nil {
		return syncpoint.Errorf(syncpoint.CodeUnavailable, "the store cannot take writes")
	}
	if h, ok := s.broker.(interface{ Health(context.Context) error }); ok {
		if err := h.Health(ctx); err != nil {
			return syncpoint.Errorf(syncpoint.CodeUnavailable, "the broker is not connected: %v", err)
		}
	}
	return nil
}

// backup is the online backup of the embedded store; other stores have
// none.
func (s *Server) backup() func(context.Context, io.Writer) error {
	if st, ok := s.store.(*pebble.Store); ok {
		return st.WriteBackup
	}
	return nil
}

// Run serves until ctx is done or Close is called, then shuts down: /readyz
// turns 503 and the listeners close, requests in flight get up to
// ShutdownTimeout to finish, devices are closed with GoingAway (3000) and
// their sync points stored, and last the store finishes its commits. It
// returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("server: Run called twice")
	}
	defer close(s.runDone)
	select {
	case <-s.closing:
		return s.releaseOnce()
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	errc := make(chan error, 2+len(s.runners))
	var wg sync.WaitGroup
	wg.Go(func() {
		var err error
		if s.httpTLS {
			err = s.http.ServeTLS(s.ln, "", "")
		} else {
			err = s.http.Serve(s.ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve http: %w", err)
		}
	})
	if s.tcpLn != nil {
		wg.Go(func() {
			if err := s.serveTCP(ctx); err != nil {
				errc <- fmt.Errorf("serve tcp: %w", err)
			}
		})
	}
	wg.Go(func() { s.leases.Run(ctx, "sweep", s.sweepLoop) })
	for _, run := range s.runners {
		wg.Go(func() {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		})
	}

	var runErr error
	select {
	case <-ctx.Done():
	case <-s.closing:
	case runErr = <-errc:
		s.logger.Error("server: a listener failed; shutting down", "err", runErr)
	}
	// The order docs/operations.md promises: not ready, and no new
	// connection, at once; then the requests in flight finish; then the
	// devices hear GoingAway and store their sync points while the store
	// is still open; then the store finishes its commits.
	s.stopping.Store(true)
	s.stopServing()
	s.hub.Close()
	cancel()
	wg.Wait() // the sweeper must be done before the store closes
	return errors.Join(runErr, s.releaseOnce())
}

// stopServing closes the listeners, so no connection is accepted from now
// on, and waits up to ShutdownTimeout for in-flight requests, whose commits
// then finish before the store closes.
func (s *Server) stopServing() {
	if s.tcpLn != nil {
		s.tcpLn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	// Shutdown closes the listener before it waits; its idle keep-alive
	// connections go at once, busy ones after their answer.
	s.http.RegisterOnShutdown(func() { s.logger.Info("server: shutting down; no longer accepting connections") })
	if err := s.http.Shutdown(ctx); err != nil {
		// Requests still running are cut off; the store still finishes
		// the appends they started.
		s.logger.Warn("server: in-flight requests did not finish in time; closing them", "timeout", s.cfg.ShutdownTimeout)
		s.http.Close()
	}
}

// serveTCP serves device sessions on the raw TCP listener (already
// TLS-wrapped when configured) until ctx is done.
func (s *Server) serveTCP(ctx context.Context) error {
	ts := &tcp.Server{Hub: s.hub, Logger: s.logger, MaxFrameBytes: s.cfg.MaxFrameBytes}
	return ts.Serve(ctx, s.tcpLn)
}

// servePprof serves the profiler until ctx is done.
func (s *Server) servePprof(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: s.cfg.ReadHeaderTimeout}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(s.pprofLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve pprof: %w", err)
	}
	return nil
}

// PprofAddr returns the profiler's address, or "" when it is off.
func (s *Server) PprofAddr() string {
	if s.pprofLn == nil {
		return ""
	}
	return s.pprofLn.Addr().String()
}

// revokeToken makes a revocation take effect at once on this node: the
// verifier's cache forgets the token, and every session and event stream
// opened with it closes with 4001. Other nodes hear of it as an
// EventRevoke and do the same; should that event be lost, they refuse the
// token once their cache entry expires (auth.DefaultOpaqueCacheTTL).
func (s *Server) revokeToken(tokenID string) {
	s.opaque.Forget(tokenID)
	s.feed.Revoke(tokenID)
	s.announce(syncpoint.Event{Kind: syncpoint.EventRevoke, TokenID: tokenID})
}

// Hub returns the device session hub.
func (s *Server) Hub() *hub.Hub { return s.hub }

// Feed returns what every device surface reads through.
func (s *Server) Feed() *feed.Feed { return s.feed }

// Store returns the server's store.
func (s *Server) Store() syncpoint.Store { return s.store }

// eventIDKey is the key that signs SSE event ids: derived from the token
// secret, which every node shares, else from the API key.
func eventIDKey(cfg Config) []byte {
	secret := cfg.TokenSecret
	if secret == "" {
		secret = cfg.APIKey
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("syncpoint sse event ids"))
	return m.Sum(nil)
}

// presence is online on any device surface of this node, or with a
// session on another node of the cluster.
type presence struct {
	hub       *hub.Hub
	events    *sse.Handler
	directory syncpoint.Directory
}

func (p presence) Online(deviceID string) bool {
	if p.hub.Online(deviceID) || p.events.Online(deviceID) {
		return true
	}
	if p.directory == nil {
		return false // one node: the hub knows every session
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := p.directory.Device(ctx, deviceID)
	return err == nil && len(list) > 0
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// sweepLoop deletes expired entries every SweepInterval.
func (s *Server) sweepLoop(ctx context.Context) { every(ctx, s.cfg.SweepInterval, nil, s.sweep) }

func (s *Server) sweep(ctx context.Context) {
	s.sweeps.Inc()
	n, err := s.store.Sweep(ctx, s.clock.Now())
	if err != nil {
		if ctx.Err() == nil {
			s.sweepErrors.Inc()
			s.logger.Error("server: sweep failed", "err", err)
		}
		return
	}
	if n > 0 {
		s.logger.Debug("server: swept expired entries", "count", n)
	}
}

// releaseOnce runs release once and remembers its error.
func (s *Server) releaseOnce() error {
	s.closeOnce.Do(func() { s.closeErr = s.release() })
	return s.closeErr
}

// release closes everything New opened, in reverse order.
func (s *Server) release() error {
	var errs []error
	if s.ln != nil {
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close http listener: %w", err))
		}
	}
	if s.tcpLn != nil {
		if err := s.tcpLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close tcp listener: %w", err))
		}
	}
	if s.pprofLn != nil {
		if err := s.pprofLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close pprof listener: %w", err))
		}
	}
	for _, c := range slices.Backward(s.closers) {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.broker != nil {
		if err := s.broker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close broker: %w", err))
		}
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
	}
	if s.dirLock != nil {
		s.dirLock.Close()
	}
	return errors.Join(errs...)
}

// Close stops a running server and waits for Run to return, or releases a
// server that never ran. It is safe to call more than once.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.closing) })
	if s.running.Load() {
		<-s.runDone
	}
	return s.releaseOnce()
}
