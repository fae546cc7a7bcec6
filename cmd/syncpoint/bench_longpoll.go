package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint/bench"
)

func benchLongPollCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.LongPollConfig
	cmd := &cobra.Command{
		Use:   "longpoll [--devices N] [--rate R] [--duration D] [--wait W] [--size B] [--compare]",
		Short: "Publish-to-device latency over HTTP sync long-polls, with exactly-once checks",
		Long: `Have N devices, each on its own user channel, drain their channels with
one-shot sync (POST /v1/sync until more is false), then long-poll it with
their cursor and a wait of W, while R entries per second are published
through POST /v1/publish, round robin over the channels, for D. Report the
latency from publish to the answer that carried the entry, the delivery rate,
the server's CPU time per delivered entry, and per device whether every entry
arrived exactly once and in order. With --compare, as many socket devices
(--transport, --encoding) get channels of their own in the same run, and
their latency is reported beside.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--devices, --rate, --duration, --wait, --size, --publishers and --drain",
				float64(c.Devices), c.Rate, float64(c.Duration), float64(c.Wait), float64(c.Size), float64(c.Publishers), float64(c.Drain)); err != nil {
				return err
			}
			return runBench(cmd, e, f, "longpoll", &c.Target, true, func(ctx context.Context) (*bench.LongPollReport, error) { return bench.LongPoll(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", bench.DefaultDevices, "long-polling devices, one user each")
	fl.Float64Var(&c.Rate, "rate", bench.DefaultRate, "entries published per second, over all devices")
	fl.DurationVar(&c.Duration, "duration", bench.DefaultDuration, "how long to publish")
	fl.DurationVar(&c.Wait, "wait", bench.DefaultLongPollWait, "the wait of each long-poll (the server caps it)")
	fl.IntVar(&c.Publishers, "publishers", bench.DefaultPublishers, "publish requests in flight at most")
	fl.DurationVar(&c.Drain, "drain", bench.DefaultDrain, "how long to wait for deliveries after the last publish")
	fl.BoolVar(&c.Compare, "compare", false, "also connect as many socket devices and report their latency beside")
	addSize(fl, &c.Size, bench.DefaultSize)
	return cmd
}
