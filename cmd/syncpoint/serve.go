package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint/console"
	"github.com/syncpoint/syncpoint/httpapi"
	"github.com/syncpoint/syncpoint/httpsync"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/internal/heapfloor"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/server"
	"github.com/syncpoint/syncpoint/wire"
)

type serveFlags struct {
	data, listen, tcpListen, config string
	store, nats, tlsCert, tlsKey    string
	apiKey, tokenSecret, logLevel   string
	tokenPublicKey, pprof, nodeID   string
	cluster                         string
	headCheck                       time.Duration
	plainHTTP                       bool
	rateLimit                       float64
	rateBurst                       int
	maxBodyBytes, heapFloor         int64
	maxTargets                      int
	sweepInterval, shutdownTimeout  time.Duration
	bodyTimeout                     time.Duration
	heartbeat                       time.Duration
	sendQueue, maxFrameBytes        int
	syncIdle, syncMaxWait           time.Duration
	syncSessions                    int
	syncTokenRate                   float64
	allowedOrigins                  []string
}

func newServeCmd(e env) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server",
		Long: `Run the server: the business API and WebSocket devices over HTTP on
--listen, and raw TCP devices on --tcp-listen. With --tls-cert and --tls-key
both listeners speak TLS (HTTPS with HTTP/2, wss://, TCP+TLS); the files are
read again on SIGHUP and when they change. Settings come from flags, then
from the config file (--config, or ./syncpoint.yaml when present), then
from defaults.

The API key and the token secret come from --api-key/--token-secret, then
SYNCPOINT_API_KEY/SYNCPOINT_TOKEN_SECRET, then DATA/secrets.json; when none
gives one, it is generated, kept in DATA/secrets.json (mode 0600) and printed
once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runServe(cmd, e, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", defaultDataDir, "data directory: the embedded store, secrets.json and server.json")
	fl.StringVar(&f.listen, "listen", defaultListen, "HTTP address of the business API (port 0 picks a free port)")
	fl.StringVar(&f.tcpListen, "tcp-listen", defaultTCPListen, `raw TCP address for device connections ("" disables it)`)
	fl.StringVar(&f.config, "config", "", "YAML config file (default ./syncpoint.yaml when it exists)")
	fl.StringVar(&f.store, "store", "", `store: "" for the embedded store in DATA/store, or a postgres:// URL`)
	fl.StringVar(&f.nats, "nats", "", "nats:// URL for fan-out between nodes; with --store postgres://, this node joins that cluster")
	fl.StringVar(&f.cluster, "cluster", "syncpoint", "the cluster's name: the prefix of its NATS subjects, so several clusters can share one NATS")
	fl.DurationVar(&f.headCheck, "head-check-interval", server.DefaultHeadCheckInterval, "in a cluster, how often a node checks its devices' channels against the store for entries whose NATS message was lost")
	fl.StringVar(&f.nodeID, "node-id", "", "this node's id in logs, metrics and the cluster (default: host name and a random suffix)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate file (chain); with --tls-key, both listeners speak TLS; reloaded on SIGHUP and when it changes")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key file for --tls-cert")
	fl.BoolVar(&f.plainHTTP, "plain-http", false, "with --tls-cert, keep --listen plain HTTP (a TLS-terminating proxy in front of it); TCP still speaks TLS")
	fl.StringVar(&f.apiKey, "api-key", "", "API key of the business API (env "+envAPIKey+")")
	fl.StringVar(&f.tokenSecret, "token-secret", "", "HS256 secret of device tokens (env "+envTokenSecret+")")
	fl.StringVar(&f.tokenPublicKey, "token-public-key", "", "PEM file of an RSA (RS256) or P-256 (ES256) public key that device tokens may also be signed with")
	fl.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, `origins of browser pages, besides the server's own, that may use the device endpoints: hosts or scheme://host, * and ? as wildcards, comma-separated or repeated ("*" is any); when given, the WebSocket endpoint refuses other origins, and the HTTP device endpoints answer the listed ones with CORS headers`)
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.pprof, "pprof", "", `address to serve Go's profiler on, e.g. 127.0.0.1:6060 ("" is off; keep it on loopback)`)
	fl.Float64Var(&f.rateLimit, "rate-limit", 0, "business API requests per second (0: unlimited)")
	fl.IntVar(&f.rateBurst, "rate-burst", 0, "burst of the rate limit (0: the rate)")
	fl.Int64Var(&f.maxBodyBytes, "max-body-bytes", 0, "largest request body (0: 16 MiB)")
	fl.Int64Var(&f.heapFloor, "heap-floor-bytes", defaultHeapFloor, "heap the Go garbage collector lets grow before a cycle, however small the live heap (0: the runtime's GOGC=100 alone; ignored when GOGC is set)")
	fl.DurationVar(&f.bodyTimeout, "body-timeout", httpapi.DefaultBodyTimeout, "how long a request body may take to arrive; past it the answer is 408")
	fl.IntVar(&f.maxTargets, "max-targets", publish.DefaultMaxTargets, "most targets one publish may name")
	fl.DurationVar(&f.sweepInterval, "sweep-interval", server.DefaultSweepInterval, "how often expired entries are deleted")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "how long shutdown waits for in-flight requests")
	fl.DurationVar(&f.heartbeat, "heartbeat-interval", hub.DefaultHeartbeatInterval, "how often device connections are pinged; 3 missed intervals close one")
	fl.IntVar(&f.sendQueue, "send-queue", hub.DefaultQueueLimit, "live entries queued per device connection before it is cut as a slow consumer")
	fl.IntVar(&f.maxFrameBytes, "max-frame-bytes", wire.DefaultMaxFrameBytes, "largest frame a device may send")
	fl.DurationVar(&f.syncIdle, "sync-session-idle", httpsync.DefaultSessionIdle, "how long an HTTP sync queue session lives without a request")
	fl.IntVar(&f.syncSessions, "sync-sessions-per-token", httpsync.DefaultMaxSessionsPerToken, "most open HTTP sync queue sessions of one token")
	fl.Float64Var(&f.syncTokenRate, "sync-token-rate", 0, "HTTP sync requests per second per token (0: unlimited)")
	fl.DurationVar(&f.syncMaxWait, "sync-max-wait", httpsync.DefaultMaxWait, "longest wait of a one-shot HTTP sync long-poll")
	return cmd
}

func runServe(cmd *cobra.Command, e env, f *serveFlags) error {
	fc, err := loadConfigFile(cmd, f.config)
	if err != nil {
		return err
	}
	f.apply(cmd, fc)
	level, err := parseLogLevel(f.logLevel)
	if err != nil {
		return usageError{err}
	}
	if err := httpapi.CheckOrigins(f.allowedOrigins); err != nil {
		return usageError{fmt.Errorf("--allowed-origins: %w", err)}
	}
	if f.heapFloor < 0 {
		return usageError{errors.New("--heap-floor-bytes must not be negative")}
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	defer heapfloor.Start(uint64(f.heapFloor))()

	if err := os.MkdirAll(f.data, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	given := secrets{APIKey: f.apiKey, TokenSecret: f.tokenSecret}
	if given.APIKey == "" {
		given.APIKey = e.getenv(envAPIKey)
	}
	if given.TokenSecret == "" {
		given.TokenSecret = e.getenv(envTokenSecret)
	}
	sec, generated, saveSecrets, err := resolveSecrets(f.data, given)
	if err != nil {
		return err
	}

	var publicKey []byte
	if f.tokenPublicKey != "" {
		if publicKey, err = os.ReadFile(f.tokenPublicKey); err != nil {
			return fmt.Errorf("token public key: %w", err)
		}
	}
	cfg := server.Config{
		DataDir:           f.data,
		Listen:            f.listen,
		TCPListen:         f.tcpListen,
		TLSCert:           f.tlsCert,
		TLSKey:            f.tlsKey,
		PlainHTTP:         f.plainHTTP,
		StoreURL:          f.store,
		NATSURL:           f.nats,
		NodeID:            f.nodeID,
		Cluster:           f.cluster,
		HeadCheckInterval: f.headCheck,
		APIKey:            sec.APIKey,
		TokenSecret:       sec.TokenSecret,
		TokenPublicKey:    publicKey,
		Logger:            logger,
		RateLimit:         f.rateLimit,
		RateBurst:         f.rateBurst,
		MaxBodyBytes:      f.maxBodyBytes,
		MaxTargets:        f.maxTargets,
		BodyTimeout:       f.bodyTimeout,
		SweepInterval:     f.sweepInterval,
		ShutdownTimeout:   f.shutdownTimeout,
		HeartbeatInterval: f.heartbeat,
		SendQueue:         f.sendQueue,
		MaxFrameBytes:     f.maxFrameBytes,
		PprofListen:       f.pprof,
		AllowedOrigins:    f.allowedOrigins,

		SyncSessionIdle:      f.syncIdle,
		SyncSessionsPerToken: f.syncSessions,
		SyncTokenRate:        f.syncTokenRate,
		SyncMaxWait:          f.syncMaxWait,
	}
	if fc != nil {
		cfg.Bizzes = fc.Bizzes
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	// The ports are bound: only now is a generated secret one that this
	// server uses, so only now is it kept and shown.
	if err := saveSecrets(); err != nil {
		srv.Close()
		return err
	}
	printGenerated(e, f.data, generated)
	info := serverInfo{HTTP: srv.Addr(), URL: srv.URL(), TCP: srv.TCPAddr(), PID: os.Getpid()}
	infoPath := filepath.Join(f.data, serverFile)
	if err := writeJSONFile(infoPath, info, 0o644); err != nil {
		srv.Close()
		return fmt.Errorf("write server info: %w", err)
	}
	logger.Info("listening on "+srv.URL(), "data", f.data, "bizzes", len(srv.Registry().List()))
	if info.TCP != "" {
		logger.Info("listening for device connections on tcp://"+info.TCP, "tls", f.tlsCert != "")
	}
	logger.Info("admin console at " + srv.URL() + console.Prefix + "; sign in with the API key")

	stopReload := reloadOnHangup(srv, logger)
	err = srv.Run(cmd.Context())
	stopReload()
	// Only a server that still owns server.json removes it.
	if cur, rerr := readServerInfo(f.data); rerr == nil && cur == info {
		os.Remove(infoPath)
	}
	if err != nil {
		return err
	}
	logger.Info("shut down cleanly")
	return nil
}

// loadConfigFile reads --config, or ./syncpoint.yaml when the flag is not
// given and the file exists. No file gives nil.
func loadConfigFile(cmd *cobra.Command, path string) (*Config, error) {
	explicit := cmd.Flags().Changed("config")
	if !explicit {
		path = defaultConfig
	}
	if path == "" {
		return nil, nil // --config "" turns the default file off
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(path, data)
	if err != nil {
		return nil, usageError{err} // a mistake in the configuration, as on the command line
	}
	return c, nil
}

// apply fills every flag the command line did not set from the file.
func (f *serveFlags) apply(cmd *cobra.Command, c *Config) {
	if c == nil {
		return
	}
	fl := cmd.Flags()
	str := func(name string, dst *string, v *string) {
		if v != nil && !fl.Changed(name) {
			*dst = *v
		}
	}
	fc := &c.file
	str("data", &f.data, fc.Data)
	str("listen", &f.listen, fc.Listen)
	str("tcp-listen", &f.tcpListen, fc.TCPListen)
	str("store", &f.store, fc.Store)
	str("nats", &f.nats, fc.NATS)
	str("node-id", &f.nodeID, fc.NodeID)
	str("cluster", &f.cluster, fc.Cluster)
	str("tls-cert", &f.tlsCert, fc.TLSCert)
	str("tls-key", &f.tlsKey, fc.TLSKey)
	str("log-level", &f.logLevel, fc.LogLevel)
	str("token-public-key", &f.tokenPublicKey, fc.TokenPublicKey)
	if fc.PlainHTTP != nil && !fl.Changed("plain-http") {
		f.plainHTTP = *fc.PlainHTTP
	}
	if fc.RateLimit != nil && !fl.Changed("rate-limit") {
		f.rateLimit = *fc.RateLimit
	}
	if fc.RateBurst != nil && !fl.Changed("rate-burst") {
		f.rateBurst = *fc.RateBurst
	}
	if fc.MaxBodyBytes != nil && !fl.Changed("max-body-bytes") {
		f.maxBodyBytes = *fc.MaxBodyBytes
	}
	if fc.HeapFloorBytes != nil && !fl.Changed("heap-floor-bytes") {
		f.heapFloor = *fc.HeapFloorBytes
	}
	if fc.BodyTimeout != nil && !fl.Changed("body-timeout") {
		f.bodyTimeout = time.Duration(*fc.BodyTimeout)
	}
	if fc.MaxTargets != nil && !fl.Changed("max-targets") {
		f.maxTargets = *fc.MaxTargets
	}
	if fc.SweepInterval != nil && !fl.Changed("sweep-interval") {
		f.sweepInterval = time.Duration(*fc.SweepInterval)
	}
	if fc.ShutdownTimeout != nil && !fl.Changed("shutdown-timeout") {
		f.shutdownTimeout = time.Duration(*fc.ShutdownTimeout)
	}
	if fc.HeartbeatInterval != nil && !fl.Changed("heartbeat-interval") {
		f.heartbeat = time.Duration(*fc.HeartbeatInterval)
	}
	if fc.SendQueue != nil && !fl.Changed("send-queue") {
		f.sendQueue = *fc.SendQueue
	}
	if fc.MaxFrameBytes != nil && !fl.Changed("max-frame-bytes") {
		f.maxFrameBytes = *fc.MaxFrameBytes
	}
	if fc.AllowedOrigins != nil && !fl.Changed("allowed-origins") {
		f.allowedOrigins = fc.AllowedOrigins
	}
}

// reloadOnHangup loads the TLS certificate again on each SIGHUP, the usual
// signal of a rotation, until the returned func is called.
func reloadOnHangup(srv *server.Server, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				if err := srv.ReloadTLS(); err != nil {
					logger.Error("SIGHUP: the TLS certificate was not reloaded; still serving the previous one", "err", err)
				}
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}

// printGenerated shows freshly generated secrets once; later starts read
// them from the file without printing.
func printGenerated(e env, dir string, g secrets) {
	if g == (secrets{}) {
		return
	}
	fmt.Fprintf(e.stdout, "Generated secrets, kept in %s (mode 0600); they are not printed again:\n", filepath.Join(dir, secretsFile))
	if g.APIKey != "" {
		fmt.Fprintf(e.stdout, "  API key:      %s\n", g.APIKey)
	}
	if g.TokenSecret != "" {
		fmt.Fprintf(e.stdout, "  token secret: %s\n", g.TokenSecret)
	}
}
