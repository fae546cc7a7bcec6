package pebble

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"
)

// A backup is a directory: a Pebble checkpoint of the store, a consistent
// copy taken while it runs, and ManifestName, written last, which lists the
// checkpoint's files and sizes. A directory without a manifest, or whose
// files do not match it, is not a backup.
//
// Restore copies a backup into a new store directory and gives it a new
// incarnation, which every epoch the store shows is made of: each channel
// then has a new epoch, so every device is told reset and none takes the
// rewound history for its own. Entries, their seqs and everything else
// stay as they were at the backup.

// ManifestName names a backup's manifest.
const ManifestName = "syncpoint-backup.json"

// backupFormat is the version of the manifest's layout.
const backupFormat = 1

var incarnationKey = storeKey("incarnation")

// Manifest is what ManifestName holds.
type Manifest struct {
	Format      int            `json:"format"`
	StoreFormat int            `json:"store_format"` // the store's format at the backup
	CreatedAt   time.Time      `json:"created_at"`
	Files       []ManifestFile `json:"files"`
}

// ManifestFile is one file of a backup.
type ManifestFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// Size is the bytes of the backup's files.
func (m Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// epoch is the epoch the store shows for a channel's stored one.
func (s *Store) epoch(raw string) string {
	if s.inc == "" || raw == "" {
		return raw
	}
	return raw + "." + s.inc
}

// Checkpoint writes a backup of the running store into dir, which must not
// exist. Every append that returned before the call is in it.
func (s *Store) Checkpoint(ctx context.Context, dir string) error {
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer s.leave()
	if err := s.db.Checkpoint(dir, pebbledb.WithFlushedWAL()); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	m := Manifest{Format: backupFormat, StoreFormat: currentFormat, CreatedAt: s.clock.Now().UTC()}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("checkpoint: %s is not a regular file", e.Name())
		}
		m.Files = append(m.Files, ManifestFile{Name: e.Name(), Size: info.Size()})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := writeSynced(filepath.Join(dir, ManifestName), append(b, '\n')); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return syncDir(dir)
}

// WriteBackup streams a backup of the running store to w as a tar archive,
// the manifest last. The checkpoint is taken first, in a directory beside
// the store's (on the same filesystem, so Pebble links its tables rather
// than copying them), and removed when the stream is done.
func (s *Store) WriteBackup(ctx context.Context, w io.Writer) error {
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(s.dir)), ".syncpoint-backup-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "store")
	if err := s.Checkpoint(ctx, dir); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m, err := VerifyBackup(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tw := tar.NewWriter(w)
	names := make([]string, 0, len(m.Files)+1)
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	for _, name := range append(names, ManifestName) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		if err := addFile(tw, dir, name); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: info.Size(), ModTime: info.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// ReadBackup writes the backup streamed by WriteBackup into dir, which must
// not exist, and checks it against its manifest. A stream cut short fails,
// and leaves no dir behind.
func ReadBackup(r io.Reader, dir string) (err error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("read backup: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read backup: %w", err)
		}
		if h.Typeflag != tar.TypeReg || !validName(h.Name) {
			return fmt.Errorf("read backup: unexpected entry %q in the archive", h.Name)
		}
		if err := writeFrom(filepath.Join(dir, h.Name), tr); err != nil {
			return fmt.Errorf("read backup: %s: %w", h.Name, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("read backup: %w", err)
	}
	if _, err := VerifyBackup(dir); err != nil {
		return fmt.Errorf("read backup: %w", err)
	}
	return nil
}

// validName accepts a plain file name, so an archive cannot write outside
// its directory.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`)
}

// VerifyBackup checks that dir holds a whole backup: a manifest of a known
// format, and every file it lists with its size.
func VerifyBackup(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("%s is not a whole backup: it has no %s", dir, ManifestName)
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %s does not parse: %w", dir, ManifestName, err)
	}
	if m.Format != backupFormat {
		return m, fmt.Errorf("%s: backup format %d; this syncpoint reads format %d", dir, m.Format, backupFormat)
	}
	if m.StoreFormat > currentFormat {
		return m, fmt.Errorf("%s: the backup's store has format %d, newer than this syncpoint knows (%d): run a newer syncpoint", dir, m.StoreFormat, currentFormat)
	}
	if len(m.Files) == 0 {
		return m, fmt.Errorf("%s: the backup lists no files", dir)
	}
	for _, f := range m.Files {
		if !validName(f.Name) || f.Name == ManifestName {
			return m, fmt.Errorf("%s: the manifest lists %q", dir, f.Name)
		}
		info, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil {
			return m, fmt.Errorf("%s is not a whole backup: %w", dir, err)
		}
		if info.Size() != f.Size {
			return m, fmt.Errorf("%s is not a whole backup: %s has %d bytes, the manifest says %d", dir, f.Name, info.Size(), f.Size)
		}
	}
	return m, nil
}

// Restore makes dir, which must not exist, a store restored from the
// backup in from, with a new incarnation: every channel shows a new epoch.
// opts are those the store is opened with to write the incarnation.
func Restore(ctx context.Context, from, dir string, opts Options) (err error) {
	m, err := VerifyBackup(from)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	for _, f := range m.Files {
		if err := copyFile(filepath.Join(from, f.Name), filepath.Join(dir, f.Name)); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	s, err := Open(dir, opts)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	inc := newEpoch()
	werr := s.write(ctx, func(t *txn) error {
		t.set(incarnationKey, []byte(inc))
		return nil
	})
	if cerr := s.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("restore: new incarnation: %w", werr)
	}
	return nil
}

func copyFile(from, to string) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeFrom(to, f)
}

// writeFrom writes a new file from r and syncs it.
func writeFrom(name string, r io.Reader) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeSynced(name string, b []byte) error { return writeFrom(name, bytes.NewReader(b)) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
