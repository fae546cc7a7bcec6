package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint/bench"
)

func benchSSECmd(e env, f *benchFlags) *cobra.Command {
	var c bench.SSEConfig
	cmd := &cobra.Command{
		Use:   "sse [--devices N] [--rate R] [--duration D] [--size B] [--compare]",
		Short: "Publish-to-device latency over Server-Sent Events, with exactly-once checks",
		Long: `Open N event streams (GET /v1/events), each device on its own user channel,
and publish R entries per second through POST /v1/publish, round robin over
the channels, for D. Report the publish-to-event latency, the delivery rate,
the server's CPU time per delivered entry, and per device whether every entry
arrived exactly once and in order. With --compare, as many socket devices
(--transport, --encoding) get channels of their own in the same run, and
their latency is reported beside.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--devices, --rate, --duration, --size, --publishers and --drain",
				float64(c.Devices), c.Rate, float64(c.Duration), float64(c.Size), float64(c.Publishers), float64(c.Drain)); err != nil {
				return err
			}
			return runBench(cmd, e, f, "sse", &c.Target, true, func(ctx context.Context) (*bench.SSEReport, error) { return bench.SSE(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", bench.DefaultDevices, "devices on event streams, one user each")
	fl.Float64Var(&c.Rate, "rate", bench.DefaultRate, "entries published per second, over all devices")
	fl.DurationVar(&c.Duration, "duration", bench.DefaultDuration, "how long to publish")
	fl.IntVar(&c.Publishers, "publishers", bench.DefaultPublishers, "publish requests in flight at most")
	fl.DurationVar(&c.Drain, "drain", bench.DefaultDrain, "how long to wait for deliveries after the last publish")
	fl.BoolVar(&c.Compare, "compare", false, "also connect as many socket devices and report their latency beside")
	addSize(fl, &c.Size, bench.DefaultSize)
	return cmd
}
