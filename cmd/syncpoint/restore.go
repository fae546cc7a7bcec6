package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/server"
)

func newRestoreCmd(e env) *cobra.Command {
	var from, data string
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Make a backup the embedded store of a data dir, in new epochs",
		Long: `Replace the store in --data with the backup in --from (written by
syncpoint backup). No server may run on --data.

The restored store has a new incarnation: every channel gets a new epoch, so
each device is told "reset" on its next connection and resyncs, wherever its
sync point was. Entries written after the backup are lost; no device takes
the rewound history for its own.

The store that was in --data is kept beside it as store.before-restore-TIME;
remove it once the restored node works. secrets.json is taken from the
backup when --data has none.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runRestore(cmd.Context(), e, from, data) },
	}
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "the backup directory")
	fl.StringVar(&data, "data", defaultDataDir, "the data dir whose store is replaced")
	return cmd
}

func runRestore(ctx context.Context, e env, from, data string) error {
	if from == "" {
		return usagef("--from is required: the backup directory")
	}
	m, err := pebble.VerifyBackup(from)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	lock, err := server.LockDataDir(data)
	if err != nil {
		return fmt.Errorf("restore: %w: stop the server first", err)
	}
	defer lock.Close()

	storeDir := filepath.Join(data, server.StoreDir)
	stamp := time.Now().UTC().Format("20060102T150405Z")
	next := storeDir + ".restoring-" + stamp
	if err := pebble.Restore(ctx, from, next, pebble.Options{}); err != nil {
		return err
	}
	kept := ""
	if _, err := os.Stat(storeDir); err == nil {
		kept = storeDir + ".before-restore-" + stamp
		if err := os.Rename(storeDir, kept); err != nil {
			os.RemoveAll(next)
			return fmt.Errorf("restore: keep the old store: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		os.RemoveAll(next)
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(next, storeDir); err != nil {
		return fmt.Errorf("restore: %w (the restored store is in %s)", err, next)
	}
	if err := restoreSecrets(from, data); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "restored %s from %s (taken %s); every channel has a new epoch, so devices resync on their next connection\n",
		storeDir, from, m.CreatedAt.Format(time.RFC3339))
	if kept != "" {
		fmt.Fprintf(e.stdout, "the store that was there is kept in %s; remove it once the node works\n", kept)
	}
	return nil
}

// restoreSecrets puts the backup's secrets.json in place when the data dir
// has none, so the restored node keeps its API key and token secret.
func restoreSecrets(from, data string) error {
	if _, err := os.Stat(filepath.Join(data, secretsFile)); err == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(from, secretsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(data, secretsFile), b, 0o600); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}
