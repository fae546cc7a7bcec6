// Command syncpoint runs a syncpoint server and talks to one.
//
//	syncpoint serve      run the server
//	syncpoint publish    publish an entry through the business API
//	syncpoint token      mint a device token for development
//	syncpoint tail       act as a device: print entries as JSON lines, ack, resume
//	syncpoint sync       act as a device: one HTTP sync pass, no socket
//	syncpoint write      upload one record change as a device
//	syncpoint bench      the load generator
//	syncpoint backup     copy the embedded store while the server runs
//	syncpoint restore    make a backup the store, in new epochs
//
// This is the only place flags, environment variables and the YAML config
// file are read; everything else takes a Config struct.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Environment variables read by the subcommands.
const (
	envAPIKey      = "SYNCPOINT_API_KEY"
	envTokenSecret = "SYNCPOINT_TOKEN_SECRET"
	envServer      = "SYNCPOINT_SERVER"
)

// Defaults of the flags.
const (
	defaultDataDir   = "./syncpoint-data"
	defaultListen    = "127.0.0.1:7420"
	defaultTCPListen = "127.0.0.1:7421"
	defaultConfig    = "syncpoint.yaml"
	// defaultHeapFloor: see internal/heapfloor and docs/operations.md.
	defaultHeapFloor = 64 << 20
)

// env is how the subcommands see the process: its I/O and environment,
// passed in so tests can run commands in-process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, e env, args []string) int {
	root := newRootCmd(e)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(e.stderr, "syncpoint: %s\n", err)
		var ue usageError
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
			return 2
		}
		return 1
	}
	return 0
}

// usageError marks a mistake on the command line (exit code 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func newRootCmd(e env) *cobra.Command {
	root := &cobra.Command{
		Use:           "syncpoint",
		Short:         "A self-hosted data sync service",
		Long:          "syncpoint stores ordered, durable logs per business type and target, and syncs them to devices.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error { return checkNumbers(c.Flags()) }
	root.AddCommand(newServeCmd(e), newPublishCmd(e), newTokenCmd(e))
	root.AddCommand(newWriteCmd(e))
	root.AddCommand(newBenchCmd(e))
	root.AddCommand(newTailCmd(e))
	root.AddCommand(newSyncCmd(e))
	root.AddCommand(newBackupCmd(e), newRestoreCmd(e))
	return root
}

// checkNumbers refuses a negative (or NaN or infinite) value in any
// numeric or duration flag: no flag of syncpoint has a use for one, and
// some would start a server that misbehaves (a negative heartbeat, a
// negative queue). Zero keeps meaning the default where a flag says so.
func checkNumbers(fl *pflag.FlagSet) error {
	var err error
	fl.VisitAll(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		v := f.Value.String()
		switch f.Value.Type() {
		case "int", "int8", "int16", "int32", "int64", "duration":
			if strings.HasPrefix(v, "-") {
				err = usagef("--%s %s: must not be negative", f.Name, v)
			}
		case "float32", "float64":
			switch x, perr := strconv.ParseFloat(v, 64); {
			case perr != nil || math.IsNaN(x) || math.IsInf(x, 0):
				err = usagef("--%s %s: want a finite number", f.Name, v)
			case x < 0:
				err = usagef("--%s %s: must not be negative", f.Name, v)
			}
		}
	})
	return err
}

// parseLogLevel accepts debug, info, warn and error.
func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(s) {
	case "debug":
		l = slog.LevelDebug
	case "", "info":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return l, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
