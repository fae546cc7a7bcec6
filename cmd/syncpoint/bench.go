package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/bench"
)

// benchFlags are the flags every bench scenario shares.
type benchFlags struct {
	c                  clientFlags
	tcp                string
	transport          string
	encoding           string
	biz                string
	createBiz          bool
	sourceIPs          string
	runID              string
	connectConcurrency int
	timeout            time.Duration
	crossNode          bool
	json               bool
	cpuProfile         string
	profile            *os.File
}

func newBenchCmd(e env) *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench SCENARIO [flags]",
		Short: "Load-test a server: latency, fanout, pubsub, idle, catchup, publish, upload, sse, longpoll, httpsync",
		Long: `Run a load scenario against a syncpoint server and report what it measured.

Devices are raw protocol clients (WebSocket by default, or TCP), one user
each; entries are published through the business API. The server, API key
and token secret come from --server/--api-key/--token-secret, else from the
data dir of a server on this machine (--data), else from the environment.

Against a cluster, --server lists its nodes, comma-separated (and --tcp their
TCP listeners, in the same order); they share one API key and token secret.
Device i connects to node i mod N and publish requests go round robin over
the nodes; with --cross-node the devices are on the second node onwards and
every publish goes to the first, so each delivery crosses between nodes. The
server CPU figures are the sum over the nodes, each node's listed below.

Every report counts its errors and lost, duplicated and reordered entries;
a figure is never reported for work that failed, and the command exits with
status 1 when anything failed. docs/benchmarks.md has the figures measured
so far and the commands that produced them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("name a scenario: latency, fanout, pubsub, idle, catchup, publish, upload, sse, longpoll or httpsync (see %s --help)", cmd.CommandPath())
		},
	}
	pf := cmd.PersistentFlags()
	f.c.addServer(pf)
	f.c.addTokenSecret(pf)
	f.c.addDataDir(pf, true)
	pf.Lookup("server").Usage = "server URL, or the nodes of a cluster comma-separated (default: from DATA/server.json, else $" + envServer + ", else http://" + defaultListen + ")"
	pf.StringVar(&f.tcp, "tcp", "", "host:port of the raw TCP listener, or one per --server node comma-separated (default: from DATA/server.json)")
	pf.BoolVar(&f.crossNode, "cross-node", false, "connect the devices to the second --server node onwards and publish to the first only")
	pf.StringVar(&f.transport, "transport", bench.TransportWS, "device transport: ws or tcp")
	pf.StringVar(&f.encoding, "encoding", "", "WebSocket encoding: json or proto (default json; tcp is always proto)")
	pf.StringVar(&f.biz, "biz", "", "biz to use (default: bench; bench-global for fanout and pubsub, bench-records for upload)")
	pf.BoolVar(&f.createBiz, "create-biz", true, "create the biz through the API when it does not exist (an existing one is never changed)")
	pf.StringVar(&f.sourceIPs, "source-ips", "", "local addresses to spread connections over, e.g. 127.0.0.2-127.0.0.20")
	pf.StringVar(&f.runID, "run-id", "", "tells this run's users and devices apart (default: random)")
	pf.IntVar(&f.connectConcurrency, "connect-concurrency", bench.DefaultConnectConcurrency, "device handshakes in flight")
	pf.DurationVar(&f.timeout, "timeout", bench.DefaultTimeout, "bound on one request, handshake or wait for an answer")
	pf.BoolVar(&f.json, "json", false, "print the report as JSON")
	pf.StringVar(&f.cpuProfile, "cpuprofile", "", "write the load generator's CPU profile to this file when the scenario succeeds, for go tool pprof (the server's: serve --pprof)")
	// cobra runs only the nearest PersistentPreRunE, so the root's check of
	// the numbers is made here too.
	cmd.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		if err := checkNumbers(c.Flags()); err != nil {
			return err
		}
		if f.cpuProfile == "" {
			return nil
		}
		var err error
		if f.profile, err = os.Create(f.cpuProfile); err != nil {
			return err
		}
		return pprof.StartCPUProfile(f.profile)
	}
	cmd.PersistentPostRunE = func(*cobra.Command, []string) error {
		if f.profile == nil {
			return nil
		}
		pprof.StopCPUProfile()
		return f.profile.Close()
	}
	cmd.AddCommand(
		benchLatencyCmd(e, f), benchFanoutCmd(e, f), benchPubSubCmd(e, f), benchIdleCmd(e, f),
		benchCatchupCmd(e, f), benchPublishCmd(e, f), benchUploadCmd(e, f),
		benchSSECmd(e, f), benchLongPollCmd(e, f), benchHTTPSyncCmd(e, f),
	)
	return cmd
}

// target resolves the shared flags; devices asks for the token secret and,
// with --transport tcp, the TCP address of each server.
func (f *benchFlags) target(e env, devices bool) (bench.Target, error) {
	t := bench.Target{
		Transport: f.transport, Encoding: f.encoding, Biz: f.biz, CreateBiz: f.createBiz, CrossNode: f.crossNode,
		RunID: f.runID, ConnectConcurrency: f.connectConcurrency, Timeout: f.timeout, TCPs: splitList([]string{f.tcp}),
	}
	switch f.transport {
	case bench.TransportWS:
		if f.encoding != "" && f.encoding != bench.EncodingJSON && f.encoding != bench.EncodingProto {
			return t, usagef("--encoding %q: want json or proto", f.encoding)
		}
	case bench.TransportTCP:
		if f.encoding != "" && f.encoding != bench.EncodingProto {
			return t, usagef("--encoding %q: TCP speaks only proto", f.encoding)
		}
	default:
		return t, usagef("--transport %q: want ws or tcp", f.transport)
	}
	if f.connectConcurrency <= 0 || f.timeout <= 0 {
		return t, usagef("--connect-concurrency and --timeout must be positive")
	}
	if f.runID != "" {
		if err := syncpoint.ValidateID("--run-id", f.runID); err != nil {
			return t, usagef("%s", syncpoint.Message(err))
		}
	}
	ips, err := bench.ParseSourceIPs(f.sourceIPs)
	if err != nil {
		return t, usageError{err}
	}
	t.SourceIPs = ips
	first, more, err := f.c.serverURLs(e)
	if err != nil {
		return t, err
	}
	t.Servers = append([]string{first}, more...)
	if f.crossNode && len(t.Servers) < 2 {
		return t, usagef("--cross-node needs at least two --server nodes")
	}
	if t.APIKey, err = f.c.resolveAPIKey(e); err != nil {
		return t, err
	}
	if devices {
		if t.TokenSecret, err = f.c.resolveTokenSecret(e); err != nil {
			return t, err
		}
		if len(t.TCPs) == 0 && f.transport == bench.TransportTCP {
			if len(t.Servers) > 1 {
				return t, usagef("--transport tcp with %d --server nodes needs --tcp with one address for each", len(t.Servers))
			}
			si, err := readServerInfo(f.c.dataDir)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return t, err
			}
			if si.TCP == "" {
				return t, usagef("--transport tcp needs --tcp, or a data dir whose server.json names the TCP listener")
			}
			t.TCPs = []string{si.TCP}
		}
		if f.transport == bench.TransportTCP && len(t.TCPs) != len(t.Servers) {
			return t, usagef("%d --server nodes but %d --tcp addresses; give one for each node", len(t.Servers), len(t.TCPs))
		}
	}
	if isTerminal(e.stderr) {
		t.Progress = e.stderr
	}
	return t, nil
}

// isTerminal reports whether w is a character device, where a progress
// line rewritten in place makes sense.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// runBench fills in the scenario's target (devices: whether it connects
// devices and so needs the token secret), keeping the one field a
// scenario's own flags set (AckInterval), raises the open file limit, runs
// the scenario and prints its report; it fails when anything in the run
// failed.
func runBench[T any, R interface {
	*T
	bench.Report
}](cmd *cobra.Command, e env, f *benchFlags, name string, target *bench.Target, devices bool, scenario func(context.Context) (R, error)) error {
	t, err := f.target(e, devices)
	if err != nil {
		return err
	}
	t.AckInterval = target.AckInterval
	*target = t
	if _, err := bench.RaiseFileLimit(); err != nil {
		fmt.Fprintf(e.stderr, "syncpoint: warning: %v\n", err)
	}
	rep, err := scenario(cmd.Context())
	if rep == nil {
		return err // the run could not start
	}
	if f.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(rep); werr != nil {
			return werr
		}
	} else if werr := rep.WriteText(e.stdout); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if n := rep.Failures(); n > 0 {
		return fmt.Errorf("bench %s: %d failures (errors, or lost, duplicated or reordered entries); the figures cover only what succeeded", name, n)
	}
	return nil
}

// addSize adds --size, the bytes of entry data.
func addSize(fl *pflag.FlagSet, v *int, def int) {
	fl.IntVar(v, "size", def, "bytes of entry data")
}

func positive(names string, vals ...float64) error {
	for _, v := range vals {
		if v <= 0 {
			return usagef("%s must be positive", names)
		}
	}
	return nil
}

func benchLatencyCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.LatencyConfig
	cmd := &cobra.Command{
		Use:   "latency [--devices N] [--rate R] [--duration D] [--size B]",
		Short: "Publish-to-device latency at a steady publish rate, with exactly-once checks",
		Long: `Connect N devices, each on its own user channel, and publish R entries per
second through POST /v1/publish, round robin over the channels, for D. Report
the publish-to-receive latency, the delivery rate, and per device whether
every entry arrived exactly once and in order.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--devices, --rate, --duration, --size, --publishers and --drain",
				float64(c.Devices), c.Rate, float64(c.Duration), float64(c.Size), float64(c.Publishers), float64(c.Drain)); err != nil {
				return err
			}
			return runBench(cmd, e, f, "latency", &c.Target, true, func(ctx context.Context) (*bench.LatencyReport, error) { return bench.Latency(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", bench.DefaultDevices, "connected devices, one user each")
	fl.Float64Var(&c.Rate, "rate", bench.DefaultRate, "entries published per second, over all devices")
	fl.DurationVar(&c.Duration, "duration", bench.DefaultDuration, "how long to publish")
	fl.IntVar(&c.Publishers, "publishers", bench.DefaultPublishers, "publish requests in flight at most")
	fl.DurationVar(&c.Drain, "drain", bench.DefaultDrain, "how long to wait for deliveries after the last publish")
	addSize(fl, &c.Size, bench.DefaultSize)
	return cmd
}

// addAckInterval adds --ack-interval, for the scenarios whose reports say
// how their devices acked.
func addAckInterval(fl *pflag.FlagSet, v *time.Duration) {
	fl.DurationVar(v, "ack-interval", 0, "devices ack at most once per interval, with their latest positions (default: every push)")
}

func benchFanoutCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.FanoutConfig
	cmd := &cobra.Command{
		Use:   "fanout [--devices N] [--entries M] [--pipeline [--rate R]]",
		Short: "How long one global entry takes to reach every connected device",
		Long: `Connect N devices to a global biz and publish M entries to it, one at a
time: each once the previous one reached every device and --interval passed.
Report the time from publish until the last device had each entry, and the
latency of every device.

With --pipeline, publish every entry without waiting for the devices: back to
back, each publish sent when the previous one was answered, or at --rate
entries per second. Report the entries that reached every device per second
and the deliveries per second, from the first publish to the last receipt,
besides the latencies.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--devices, --entries, --interval and --size", float64(c.Devices), float64(c.Entries), float64(c.Interval), float64(c.Size)); err != nil {
				return err
			}
			if !c.Pipeline && c.Rate > 0 {
				return usagef("--rate paces a pipelined run; add --pipeline")
			}
			if c.Pipeline && cmd.Flags().Changed("interval") {
				return usagef("--interval is the pause between entries one at a time; --pipeline does not wait")
			}
			return runBench(cmd, e, f, "fanout", &c.Target, true, func(ctx context.Context) (*bench.FanoutReport, error) { return bench.Fanout(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", bench.DefaultFanoutDevices, "devices subscribed to the global biz")
	fl.IntVar(&c.Entries, "entries", bench.DefaultFanoutEntries, "global entries to publish")
	fl.DurationVar(&c.Interval, "interval", bench.DefaultFanoutInterval, "pause after an entry reached every device")
	fl.BoolVar(&c.Pipeline, "pipeline", false, "publish every entry without waiting for it to reach the devices")
	fl.Float64Var(&c.Rate, "rate", 0, "with --pipeline: entries per second (default: back to back, one publish in flight)")
	addAckInterval(fl, &c.AckInterval)
	addSize(fl, &c.Size, bench.DefaultSize)
	return cmd
}

func benchIdleCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.IdleConfig
	cmd := &cobra.Command{
		Use:   "idle [--devices N] [--hold D]",
		Short: "Connect rate, and the server's memory per idle connection",
		Long: `Connect N devices, hold them for D, then disconnect. Report the connect
rate and the server's memory per connection, from its /metrics before the
devices connected and during the hold: heap in use, live heap objects,
goroutine stacks and resident memory. With --wait-gc both readings are taken
just after a garbage collection of the server (it runs one at least every two
minutes), so neither counts garbage; otherwise use a freshly started server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--devices and --hold", float64(c.Devices), float64(c.Hold)); err != nil {
				return err
			}
			return runBench(cmd, e, f, "idle", &c.Target, true, func(ctx context.Context) (*bench.IdleReport, error) { return bench.Idle(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", bench.DefaultIdleDevices, "devices to connect and hold")
	fl.DurationVar(&c.Hold, "hold", bench.DefaultHold, "how long to hold them")
	fl.BoolVar(&c.WaitGC, "wait-gc", false, "read the server's memory just after its garbage collections (can take minutes)")
	return cmd
}

func benchCatchupCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.CatchupConfig
	cmd := &cobra.Command{
		Use:   "catchup [--backlog M]",
		Short: "How fast one device syncs a large backlog from zero",
		Long: `Publish M entries to one user channel through POST /v1/publish/batch, then
connect one device with no sync point and time its catch-up, from the hello
to the last entry, checking every entry arrives once and in order.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--backlog, --size, --batch and --concurrency", float64(c.Backlog), float64(c.Size), float64(c.BatchSize), float64(c.Concurrency)); err != nil {
				return err
			}
			if c.BatchSize > bench.DefaultBatchSize {
				return usagef("--batch: at most %d", bench.DefaultBatchSize)
			}
			return runBench(cmd, e, f, "catchup", &c.Target, true, func(ctx context.Context) (*bench.CatchupReport, error) { return bench.Catchup(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Backlog, "backlog", bench.DefaultBacklog, "entries in the backlog")
	fl.IntVar(&c.BatchSize, "batch", bench.DefaultBatchSize, "entries per batch request of the setup")
	fl.IntVar(&c.Concurrency, "concurrency", bench.DefaultConcurrency, "batch requests in flight during the setup")
	addSize(fl, &c.Size, bench.DefaultCatchupSize)
	return cmd
}

func benchPublishCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.PublishConfig
	cmd := &cobra.Command{
		Use:   "publish [--concurrency C] [--duration D] [--batch K]",
		Short: "Durable publishes per second through the business API",
		Long: `Publish from C keep-alive clients as fast as the server answers, for D:
single publishes to POST /v1/publish, or batches of K to POST
/v1/publish/batch, round robin over --channels user channels. Report durable
entries per second and the latency of each request.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--concurrency, --duration, --batch, --channels and --size",
				float64(c.Concurrency), float64(c.Duration), float64(c.Batch), float64(c.Channels), float64(c.Size)); err != nil {
				return err
			}
			if c.Batch > bench.DefaultBatchSize {
				return usagef("--batch: at most %d", bench.DefaultBatchSize)
			}
			return runBench(cmd, e, f, "publish", &c.Target, false, func(ctx context.Context) (*bench.PublishReport, error) { return bench.Publish(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Concurrency, "concurrency", bench.DefaultPublishConcurrency, "publishing clients")
	fl.DurationVar(&c.Duration, "duration", bench.DefaultDuration, "how long to publish")
	fl.IntVar(&c.Batch, "batch", 1, "entries per request; above 1 uses the batch API")
	fl.IntVar(&c.Channels, "channels", bench.DefaultChannels, "user channels written, round robin")
	addSize(fl, &c.Size, bench.DefaultSize)
	return cmd
}

func benchUploadCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.UploadConfig
	cmd := &cobra.Command{
		Use:   "upload [--devices N] [--duration D]",
		Short: "Record uploads saved per second",
		Long: `Connect N devices to a writable user biz; each sends write frames of
--records created records, one at a time, and waits for the write_result.
Report the records saved per second and the write round trip. Refused
records and failed or unanswered writes are errors, never figures.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--devices, --duration, --records and --size", float64(c.Devices), float64(c.Duration), float64(c.Records), float64(c.Size)); err != nil {
				return err
			}
			return runBench(cmd, e, f, "upload", &c.Target, true, func(ctx context.Context) (*bench.UploadReport, error) { return bench.Upload(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", bench.DefaultDevices, "uploading devices, one write in flight each")
	fl.DurationVar(&c.Duration, "duration", bench.DefaultDuration, "how long to upload")
	fl.IntVar(&c.Records, "records", bench.DefaultRecords, "created records per write")
	addSize(fl, &c.Size, bench.DefaultSize)
	return cmd
}

func benchHTTPSyncCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.HTTPSyncConfig
	cmd := &cobra.Command{
		Use:   "httpsync [--devices N] [--backlog M] [--page P] [--mode queue|oneshot|both]",
		Short: "How fast devices drain a backlog over HTTP sync: queue sessions and one-shot",
		Long: `Publish M entries to each of N user channels through POST /v1/publish/batch,
then drain them over HTTP sync, with no socket: with queue sessions (pages of
P items, each acked before the next, then a start that must find nothing
left), with one-shot sync (answers of P changes until more is false), or
both, each by devices of its own from no sync point. Report the items per
second, acks included, the request latency and the server's CPU per item,
checking that every device got every entry once and in order.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--devices, --backlog, --page, --size and --concurrency",
				float64(c.Devices), float64(c.Backlog), float64(c.Page), float64(c.Size), float64(c.Concurrency)); err != nil {
				return err
			}
			if c.Page > bench.DefaultHTTPSyncPage {
				return usagef("--page: at most %d", bench.DefaultHTTPSyncPage)
			}
			switch c.Mode {
			case bench.HTTPSyncQueue, bench.HTTPSyncOneShot, bench.HTTPSyncBoth:
			default:
				return usagef("--mode %q: want queue, oneshot or both", c.Mode)
			}
			return runBench(cmd, e, f, "httpsync", &c.Target, true, func(ctx context.Context) (*bench.HTTPSyncReport, error) { return bench.HTTPSync(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", 1, "devices, each on its own user channel")
	fl.IntVar(&c.Backlog, "backlog", bench.DefaultHTTPSyncBacklog, "entries in each device's backlog")
	fl.IntVar(&c.Page, "page", bench.DefaultHTTPSyncPage, "items per queue page and changes per one-shot answer")
	fl.StringVar(&c.Mode, "mode", bench.HTTPSyncBoth, "queue, oneshot or both")
	fl.IntVar(&c.Concurrency, "concurrency", bench.DefaultConcurrency, "batch requests in flight during the setup")
	addSize(fl, &c.Size, bench.DefaultCatchupSize)
	return cmd
}
