package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint/bench"
)

func benchPubSubCmd(e env, f *benchFlags) *cobra.Command {
	var c bench.PubSubConfig
	cmd := &cobra.Command{
		Use:   "pubsub [--devices N] [--publishers P] [--entries M] [--size B] [--ack-interval D]",
		Short: "Deliveries per second to N devices on one global channel from P publishers",
		Long: `Connect N devices to a global biz, then have P publishers send M entries to
it between them through POST /v1/publish (M in all, as NATS's bench and
Centrifugo's bench_client count it), each publisher sending its next publish
when its previous one was answered. Wait up to --drain for every device to
have every entry. Report the deliveries per second, from the first publish
to the last receipt, the publish-to-device latency, the server's CPU time per
delivered entry, and per device whether every entry arrived exactly once and
in order. With --ack-interval the devices ack at most once per interval
instead of after every push.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := positive("--devices, --publishers, --entries, --size and --drain",
				float64(c.Devices), float64(c.Publishers), float64(c.Entries), float64(c.Size), float64(c.Drain)); err != nil {
				return err
			}
			return runBench(cmd, e, f, "pubsub", &c.Target, true, func(ctx context.Context) (*bench.PubSubReport, error) { return bench.PubSub(ctx, c) })
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", bench.DefaultPubSubDevices, "devices subscribed to the global biz")
	fl.IntVar(&c.Publishers, "publishers", bench.DefaultPubSubPublishers, "concurrent publishers, one publish in flight each")
	fl.IntVar(&c.Entries, "entries", bench.DefaultPubSubEntries, "entries to publish, over all publishers")
	fl.DurationVar(&c.Drain, "drain", bench.DefaultDrain, "how long to wait for deliveries after the last publish")
	addAckInterval(fl, &c.AckInterval)
	addSize(fl, &c.Size, bench.DefaultSize)
	return cmd
}
