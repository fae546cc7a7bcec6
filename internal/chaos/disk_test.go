package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/internal/history"
	"github.com/syncpoint/syncpoint/internal/servetest"
)

// TestFullDisk runs the server on a small tmpfs of its own, fills the
// disk while devices are connected and a backend publishes, and checks
// that the server refuses writes with 503 (and /readyz says 503) instead
// of acknowledging what it cannot keep; then frees the space and, if the
// server does not take writes again by itself, restarts it. Nothing
// acknowledged is lost, and devices get every entry exactly once. It
// needs root to mount the tmpfs and skips without.
func TestFullDisk(t *testing.T) {
	mustBinary(t)
	dir := mountTmpfs(t, 64<<20)
	bizzes := []biz{{name: "chat", target: "user"}, {name: "news", target: "global"}}
	e := newEnvNoServer(t, bizzes)
	e.srv = servetest.Start(t, servetest.Config{Bin: mustBinary(t), Data: filepath.Join(dir, "data"), YAML: configYAML(bizzes),
		APIKey: e.apiKey, TokenSecret: e.secret, Args: []string{"--log-level", "warn"}})
	e.api = e.apiClient(e.srv.URL())

	var devs []*device
	for i := range 4 {
		o := devOpts{id: fmt.Sprintf("f%d", i), user: fmt.Sprintf("u%d", i%2), bizzes: []string{"chat", "news"}}
		if i%2 == 0 {
			o.tcp = e.srv.TCPAddr()
		} else {
			o.server = e.srv.URL()
		}
		devs = append(devs, e.openDevice(o))
	}
	for _, d := range devs {
		d.run()
	}
	targets := []string{"chat/user:u0", "chat/user:u1", "news/global"}

	// Each publish is sent once: a 503 is an answer of unknown outcome, as
	// the write may have reached the disk before the failure was seen.
	var mu sync.Mutex
	statuses := make(map[string]int)
	load, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 3 {
		p := e.publisher(fmt.Sprintf("w%d", w), e.api)
		wg.Go(func() {
			for i := 0; load.Err() == nil; i++ {
				st := p.once(targets[(w+i)%len(targets)], 512)
				mu.Lock()
				statuses[st]++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)

	filler := filepath.Join(dir, "filler")
	n, err := fill(filler)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v after %d MiB", err, n>>20)
	}
	t.Logf("disk full after %d MiB of filler", n>>20)
	waitFor(t, 30*time.Second, "a publish refused with 503", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return statuses["503"] > 0
	})
	if code := status(e.srv.URL() + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz on a full disk: %d; want 503", code)
	}
	time.Sleep(time.Second)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	recovered := waitUntil(5*time.Second, func() bool { return status(e.srv.URL()+"/readyz") == http.StatusOK })
	if !recovered {
		// The store takes no writes after a failed sync until it is opened
		// again: the operator's restart, once space is back.
		t.Logf("not ready 5s after the space came back; restarting")
		if code := e.srv.Stop(); code != 0 {
			t.Logf("serve exited %d on SIGTERM after the disk failure; its log ends:\n%s", code, lastLines(e.srv.Log(), 4))
		}
		e.srv.Restart()
	}
	waitFor(t, 30*time.Second, "publishes answered 200 again", func() bool {
		mu.Lock()
		before := statuses["200"]
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return statuses["200"] > before
	})
	stopLoad()
	wg.Wait()
	mu.Lock()
	t.Logf("publish answers: %v; recovered by itself: %v", statuses, recovered)
	for st := range statuses {
		if st != "200" && st != "503" && st != "error" {
			t.Errorf("a publish was answered %s: %v", st, statuses)
		}
	}
	mu.Unlock()

	var cs []caughtUp
	for _, d := range devs {
		cs = append(cs, d)
	}
	e.converge(e.api, time.Minute, cs...)
	e.check(e.api, devs...)
}

// once sends one publish of about size bytes to ch with no retry and
// records it; it returns the status, or "error" when no answer came.
func (p *publisher) once(ch string, size int) string {
	p.n++
	data := fmt.Sprintf(`{"w":%q,"n":%d,"pad":"%0*d"}`, p.name, p.n, size, 0)
	bizName, target, _ := strings.Cut(ch, "/")
	req := apiclient.PublishRequest{Biz: bizName, Data: []byte(data), IdempotencyKey: fmt.Sprintf("%s-%d", p.name, p.n)}
	if target == "global" {
		req.Global = true
	} else {
		req.Users = []string{target[len("user:"):]}
	}
	p.e.addChannels(ch)
	rec := history.Publish{Writer: p.name, Channel: ch, Digest: history.Digest([]byte(data)), Outcome: history.Unknown}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := p.api.Publish(ctx, &req)
	var se *apiclient.StatusError
	st := "error"
	switch {
	case err == nil && len(resp.Entries) == 1 && resp.Entries[0].Error == nil:
		rec.Outcome, rec.Seq, st = history.Acked, resp.Entries[0].Seq, "200"
	case err == nil:
		st = "200 with an error: " + string(resp.Entries[0].Error.Code)
	case errors.As(err, &se):
		st = fmt.Sprint(se.Status)
	}
	p.e.h.Publish(rec)
	return st
}

// mountTmpfs mounts a tmpfs of size bytes for the test, or skips.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	// Registered after TempDir's own cleanup, so it runs first.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes zeros to path until the disk is full; it returns how much
// went in and the error that stopped it.
func fill(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

func status(url string) int {
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
