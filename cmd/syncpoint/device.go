package main

import (
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/syncpoint/syncpoint/client"
)

// deviceFlags are the flags of the commands that act as a device through
// the Go SDK (tail, sync): who the device is, what it reads, its token and
// its state file.
type deviceFlags struct {
	token      string
	user       string
	groups     []string
	device     string
	bizzes     []string
	platform   string
	appVersion string
	statePath  string
	logLevel   string
}

func (d *deviceFlags) add(fl *pflag.FlagSet, bizHelp string) {
	fl.StringVar(&d.token, "token", "", "device token")
	fl.StringVar(&d.user, "user", "", "mint a token for this user instead of --token")
	fl.StringSliceVar(&d.groups, "groups", nil, "groups the minted token grants, comma-separated")
	fl.StringVar(&d.device, "device", "", "device id")
	fl.StringSliceVar(&d.bizzes, "biz", nil, bizHelp)
	fl.StringVar(&d.platform, "platform", "", "platform the device reports (for entry conditions)")
	fl.StringVar(&d.appVersion, "app-version", "", "app version the device reports (for entry conditions)")
	fl.StringVar(&d.statePath, "state", "", "state file holding the sync points (default ./DEVICE.syncpoint.db)")
	fl.StringVar(&d.logLevel, "log-level", "info", "debug, info, warn or error (logs go to stderr)")
}

// check refuses a missing device, biz or token as a usage error.
func (d *deviceFlags) check() error {
	d.bizzes = splitList(d.bizzes)
	switch {
	case d.device == "":
		return usagef("--device is required")
	case len(d.bizzes) == 0:
		return usagef("--biz is required")
	case d.token != "" && d.user != "":
		return usagef("give --token or --user, not both")
	case d.token == "" && d.user == "":
		return usagef("no token: give --token, or --user to mint one")
	}
	return nil
}

// config is the SDK's configuration for the device, without its server,
// transport or TLS.
func (d *deviceFlags) config(e env) (client.Config, error) {
	level, err := parseLogLevel(d.logLevel)
	if err != nil {
		return client.Config{}, usageError{err}
	}
	cfg := client.Config{
		Token:      d.token,
		DeviceID:   d.device,
		Platform:   d.platform,
		AppVersion: d.appVersion,
		Bizzes:     d.bizzes,
		DBPath:     d.statePath,
		Logger:     slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})),
	}
	if cfg.DBPath == "" {
		cfg.DBPath = d.device + ".syncpoint.db"
	}
	return cfg, nil
}

// mintToken fills in cfg's token, minted for --user, when --token gave none.
func (d *deviceFlags) mintToken(e env, c *clientFlags, cfg *client.Config) error {
	if d.token != "" {
		return nil
	}
	var err error
	cfg.Token, err = c.mintDeviceToken(e, d.user, d.groups, tailTokenTTL)
	return err
}
