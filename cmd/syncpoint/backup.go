package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/server"
)

func newBackupCmd(e env) *cobra.Command {
	var c clientFlags
	var out string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Copy the embedded store, consistently, while the server runs",
		Long: `Write a consistent copy of the embedded store in --data to --out, a
directory that must not exist yet (an empty one is replaced).

When a server runs on --data (DATA/server.json names it) or --server is
given, the copy is taken by the running server (POST /v1/admin/backup, with
the API key) and streamed here; every publish answered before the backup
began is in it. When no server runs, the store is opened and copied
directly. A backup holds the store and, when it is readable here,
DATA/secrets.json. Give it to syncpoint restore.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runBackup(cmd.Context(), e, &c, out) },
	}
	fl := cmd.Flags()
	fl.StringVar(&out, "out", "", "directory to write the backup to (must not exist)")
	c.addServer(fl)
	c.addDataDir(fl, true)
	return cmd
}

func runBackup(ctx context.Context, e env, c *clientFlags, out string) error {
	if out == "" {
		return usagef("--out is required: the directory to write the backup to")
	}
	if err := clearOut(out); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(out)), "."+filepath.Base(out)+".partial-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	// The checkpoint and the archive reader each make their directory.
	dir := filepath.Join(tmp, "backup")

	how, err := takeBackup(ctx, e, c, dir)
	if err != nil {
		return err
	}
	if err := copySecrets(c.dataDir, dir); err != nil {
		return err
	}
	m, err := pebble.VerifyBackup(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(dir, out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(e.stdout, "backup of %s written to %s (%d files, %d bytes), %s\n", c.dataDir, out, len(m.Files), m.Size(), how)
	return nil
}

// clearOut checks that --out can become the backup: it must not exist,
// or be an empty directory, which is removed.
func clearOut(out string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return usagef("--out %s: %v", out, err)
	case len(entries) > 0:
		return usagef("--out %s exists and is not empty; give a new directory", out)
	}
	if err := os.Remove(out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// takeBackup writes the backup to dir, through the running server when
// there is one, else from the store directly, and says which it did.
func takeBackup(ctx context.Context, e env, c *clientFlags, dir string) (string, error) {
	base := ""
	if c.server != "" {
		u, err := c.serverURL(e)
		if err != nil {
			return "", err
		}
		base = u
	} else if si, err := readServerInfo(c.dataDir); err == nil && si.HTTP != "" {
		base = "http://" + si.HTTP
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if base != "" {
		err := backupOnline(ctx, e, c, base, dir)
		if err == nil {
			return "taken by the server at " + base, nil
		}
		// server.json outlives a crashed server; no one listening there
		// means the store is free to open, which the lock below confirms.
		if c.server != "" || !errors.Is(err, syscall.ECONNREFUSED) {
			return "", err
		}
	}
	if err := backupDirect(ctx, c.dataDir, dir); err != nil {
		return "", err
	}
	return "taken from the store directly (no server was running)", nil
}

func backupOnline(ctx context.Context, e env, c *clientFlags, base, dir string) error {
	key, err := c.resolveAPIKey(e)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/admin/backup", nil)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, apiclient.DefaultMaxResponseBytes))
		return fmt.Errorf("the server refused the backup: %w", apiclient.AnswerError(resp.StatusCode, body))
	}
	if err := pebble.ReadBackup(resp.Body, dir); err != nil {
		return fmt.Errorf("backup: the server's archive: %w", err)
	}
	return nil
}

// backupDirect opens the store of a data dir no server runs on, holding
// the data dir's lock so that none starts meanwhile, and checkpoints it.
func backupDirect(ctx context.Context, data, dir string) error {
	storeDir := filepath.Join(data, server.StoreDir)
	if _, err := os.Stat(storeDir); err != nil {
		return fmt.Errorf("backup: no store in %s: %w", data, err)
	}
	lock, err := server.LockDataDir(data)
	if err != nil {
		return fmt.Errorf("backup: %w; a server that holds it did not answer: give its address with --server", err)
	}
	defer lock.Close()
	st, err := pebble.Open(storeDir, pebble.Options{})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	err = st.Checkpoint(ctx, dir)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// copySecrets keeps DATA/secrets.json with the backup, when there is one
// here: a node restored without it would generate new secrets.
func copySecrets(from, to string) error {
	b, err := os.ReadFile(filepath.Join(from, secretsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(to, secretsFile), b, 0o600); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}
