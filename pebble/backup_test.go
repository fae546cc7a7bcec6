package pebble

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

// TestRestoreResetsEveryDevice restores a backup after the store moved on:
// devices whose sync point is at, behind or ahead of the backup point are
// all told reset, since every channel shows a new epoch; the history itself
// (entries, seqs, keys, idempotency keys, tombstones) is the backup's.
func TestRestoreResetsEveryDevice(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := MustOpenStoreOptions(t, filepath.Join(root, "live"), Options{})
	created := time.Now()
	compact := syncpoint.Policy{Compact: true, Retention: time.Hour}
	for i := range 5 {
		mustAppend(t, s, msgReq(chatU1, fmt.Sprint(i+1)))
	}
	put := msgReq(recsG1, `{"v":1}`)
	put.Entry.Op, put.Entry.Key, put.Entry.IdempotencyKey, put.Policy = syncpoint.OpPut, "k", "once", compact
	gone := msgReq(recsG1, "")
	gone.Entry.Op, gone.Entry.Key, gone.Entry.CreatedAt, gone.Policy = syncpoint.OpDelete, "old", created, compact
	mustAppend(t, s, put, gone)
	before := map[syncpoint.Channel]syncpoint.ChannelInfo{}
	for _, ch := range []syncpoint.Channel{chatU1, recsG1} {
		info, err := s.Channel(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		before[ch] = info
	}

	backup := filepath.Join(root, "backup")
	if err := s.Checkpoint(ctx, backup); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustAppend(t, s, msgReq(chatU1, fmt.Sprint(6+i))) // written after the backup: lost by the restore
	}

	restored := filepath.Join(root, "restored")
	if err := Restore(ctx, backup, restored, Options{}); err != nil {
		t.Fatal(err)
	}
	r := MustOpenStoreOptions(t, restored, Options{})
	info, err := r.Channel(ctx, chatU1)
	if err != nil {
		t.Fatal(err)
	}
	old := before[chatU1]
	if info.Epoch == old.Epoch || info.FirstSeq != 1 || info.LastSeq != 5 {
		t.Fatalf("restored channel %+v, want seqs 1..5 of the backup in a new epoch (not %s)", info, old.Epoch)
	}
	for name, seq := range map[string]uint64{"at": 5, "behind": 3, "ahead": 8} {
		if st, from := info.Check(syncpoint.Position{Epoch: old.Epoch, Seq: seq}); st != syncpoint.StatusReset || from != 0 {
			t.Errorf("a device %s the backup point (seq %d) is told %s from %d, want reset", name, seq, st, from)
		}
	}
	if st, _ := info.Check(syncpoint.Position{}); st != syncpoint.StatusOK {
		t.Errorf("a new device is told %s, want ok", st)
	}
	if g, err := r.Channel(ctx, recsG1); err != nil || g.Epoch == before[recsG1].Epoch || g.Epoch == info.Epoch {
		t.Fatalf("the other channel after the restore: %+v %v, want an epoch of its own, new", g, err)
	}
	p := mustReadAll(t, r, chatU1)
	if len(p.Entries) != 5 || string(p.Entries[4].Data) != "5" || p.Entries[0].Epoch != info.Epoch {
		t.Fatalf("restored entries %+v, want the backup's five in the new epoch", p.Entries)
	}
	if res := mustAppend(t, r, msgReq(chatU1, "new"))[0]; res.Seq != 6 || res.Epoch != info.Epoch {
		t.Fatalf("append after the restore: %+v, want seq 6 in %s", res, info.Epoch)
	}
	if e, err := r.KeyEntry(ctx, recsG1, "k"); err != nil || e.Epoch == before[recsG1].Epoch {
		t.Fatalf("key entry after the restore: %+v %v", e, err)
	}
	if res := mustAppend(t, r, put)[0]; !res.Duplicate || res.Seq != 1 {
		t.Fatalf("an idempotency key of the backup: %+v, want a duplicate of 1", res)
	}
	// Tombstones keep working: the sweep still finds their epoch.
	if n, err := r.Sweep(ctx, created.Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("sweep of the backup's tombstone: %d %v, want 1", n, err)
	}
	// The epochs stay as they are across a reopen, and a second restore of
	// the same backup gives others again.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = MustOpenStoreOptions(t, restored, Options{})
	if again, _ := r.Channel(ctx, chatU1); again.Epoch != info.Epoch {
		t.Fatalf("epoch after a reopen %s, want %s", again.Epoch, info.Epoch)
	}
	second := filepath.Join(root, "second")
	if err := Restore(ctx, backup, second, Options{}); err != nil {
		t.Fatal(err)
	}
	r2 := MustOpenStoreOptions(t, second, Options{})
	if i2, _ := r2.Channel(ctx, chatU1); i2.Epoch == info.Epoch || i2.Epoch == old.Epoch {
		t.Fatalf("a second restore shows epoch %s again", i2.Epoch)
	}
	if err := Restore(ctx, backup, second, Options{}); err == nil {
		t.Fatal("a restore over an existing directory succeeded")
	}
}

// TestCheckpointWhileAppending takes a backup under concurrent appends: the
// backup holds a gap-free prefix of each channel that includes every
// append that returned before the checkpoint began.
func TestCheckpointWhileAppending(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := MustOpenStoreOptions(t, filepath.Join(root, "live"), Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := uint64(0)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := s.Append(ctx, []syncpoint.AppendRequest{msgReq(chatU1, `1`)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = max(acked, res[0].Seq)
				mu.Unlock()
			}
		}()
	}
	waitUntil(t, "appends are under way", func() bool { mu.Lock(); defer mu.Unlock(); return acked > 100 })
	mu.Lock()
	floor := acked
	mu.Unlock()
	backup := filepath.Join(root, "backup")
	err := s.Checkpoint(ctx, backup)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(root, "restored")
	if err := Restore(ctx, backup, restored, Options{}); err != nil {
		t.Fatal(err)
	}
	r := MustOpenStoreOptions(t, restored, Options{})
	p := mustReadAll(t, r, chatU1)
	if uint64(len(p.Entries)) < floor || p.Info.LastSeq != uint64(len(p.Entries)) {
		t.Fatalf("the backup holds %d entries (last %d); want a gap-free prefix of at least %d", len(p.Entries), p.Info.LastSeq, floor)
	}
	for i, e := range p.Entries {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d of the backup has seq %d", i, e.Seq)
		}
	}
}

// TestBackupStream streams a backup as WriteBackup does for the backup
// command, reads it back, and refuses a stream cut short or a backup that
// does not match its manifest.
func TestBackupStream(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := MustOpenStoreOptions(t, filepath.Join(root, "live"), Options{})
	mustAppend(t, s, msgReq(chatU1, `1`), msgReq(chatU1, `2`))
	var buf bytes.Buffer
	if err := s.WriteBackup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, ".syncpoint-backup-*")); len(left) != 0 {
		t.Fatalf("the checkpoint was left behind: %v", left)
	}
	got := filepath.Join(root, "got")
	if err := ReadBackup(bytes.NewReader(buf.Bytes()), got); err != nil {
		t.Fatal(err)
	}
	m, err := VerifyBackup(got)
	if err != nil || len(m.Files) == 0 || m.StoreFormat != currentFormat {
		t.Fatalf("the streamed backup: %+v %v", m, err)
	}
	restored := filepath.Join(root, "restored")
	if err := Restore(ctx, got, restored, Options{}); err != nil {
		t.Fatal(err)
	}
	if p := mustReadAll(t, MustOpenStoreOptions(t, restored, Options{}), chatU1); len(p.Entries) != 2 {
		t.Fatalf("restored from the stream: %d entries, want 2", len(p.Entries))
	}

	cut := filepath.Join(root, "cut")
	err = ReadBackup(bytes.NewReader(buf.Bytes()[:buf.Len()-2048]), cut)
	if err == nil {
		t.Fatal("a stream cut short was read as a backup")
	}
	if _, serr := os.Stat(cut); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a failed read left %s behind: %v", cut, serr)
	}

	// A file that does not match the manifest, or no manifest at all.
	mf := filepath.Join(got, ManifestName)
	b, _ := os.ReadFile(mf)
	var man Manifest
	json.Unmarshal(b, &man)
	man.Files[0].Size++
	b, _ = json.Marshal(man)
	os.WriteFile(mf, b, 0o600)
	if _, err := VerifyBackup(got); err == nil || !strings.Contains(err.Error(), "not a whole backup") {
		t.Fatalf("a backup with a wrong size: %v", err)
	}
	os.Remove(mf)
	if err := Restore(ctx, got, filepath.Join(root, "nope"), Options{}); err == nil || !strings.Contains(err.Error(), "has no "+ManifestName) {
		t.Fatalf("restore of a directory without a manifest: %v", err)
	}
}
