package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// binPath is the syncpoint binary built once by TestMain for the tests that
// run the real thing.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "syncpoint-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "syncpoint")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// MustBuildBinary builds the syncpoint binary, once per test run.
func MustBuildBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

var (
	buildOnce sync.Once
	buildErr  error
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveProc is a running `syncpoint serve`.
type serveProc struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	info   serverInfo
	exited chan struct{}
	err    error // what Wait returned, once exited is closed
}

// childEnv is the test's environment without syncpoint's own variables, so
// a developer's exported secrets do not leak into the tests.
func childEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SYNCPOINT_") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// MustStartServe starts `syncpoint serve` on data and waits until it has
// written server.json and logged its listening line. It is killed at
// cleanup if still running.
func MustStartServe(tb testing.TB, data, config string, env []string, args ...string) *serveProc {
	tb.Helper()
	bin := MustBuildBinary(tb)
	all := append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--config", config}, args...)
	p := &serveProc{
		cmd:    exec.Command(bin, all...),
		stdout: &lockedBuffer{},
		stderr: &lockedBuffer{},
		exited: make(chan struct{}),
	}
	p.cmd.Dir = tb.TempDir()
	p.cmd.Env = childEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start serve: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	tb.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		// server.json of a killed predecessor may still be there: wait
		// for this process's own.
		si, err := readServerInfo(data)
		if err == nil && si.PID == p.cmd.Process.Pid && strings.Contains(p.stderr.String(), "listening on "+si.URL) {
			p.info = si
			return p
		}
		select {
		case <-p.exited:
			tb.Fatalf("serve exited early: %v\nstdout:\n%s\nstderr:\n%s", p.err, p.stdout, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("serve did not start\nstderr:\n%s", p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *serveProc) wait(tb testing.TB) int {
	tb.Helper()
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		tb.Fatalf("serve did not exit\nstderr:\n%s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *serveProc) url() string { return p.info.URL }

// writeConfig writes a config with the test bizzes and returns its path.
func writeConfig(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "syncpoint.yaml")
	src := "bizzes:\n  - name: chat\n    target: user\n  - name: config\n    target: global\n    compact: true\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// runCLI runs the binary with args and returns its exit code and output.
func runCLI(tb testing.TB, env []string, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	cmd := exec.Command(MustBuildBinary(tb), args...)
	cmd.Env = childEnv(env...)
	cmd.Dir = tb.TempDir()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		tb.Fatalf("run %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), o.String(), e.String()
}

// ack is a publish the server answered 200 to.
type ack struct {
	user string
	seq  uint64
	data string
}

// publisher sends publishes with an API key over one shared client.
type publisher struct {
	client *http.Client
	url    string
	key    string
}

func newPublisher(url, key string) *publisher {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	return &publisher{client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, url: url, key: key}
}

// publish sends one chat message; ok is false when there was no 200.
func (p *publisher) publish(ctx context.Context, user, data string) (seq uint64, ok bool, err error) {
	body := fmt.Sprintf(`{"biz":"chat","users":[%q],"data":%s}`, user, data)
	req, err := http.NewRequestWithContext(ctx, "POST", p.url+"/v1/publish", strings.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("HTTP %d: %s (%v)", resp.StatusCode, b, err)
	}
	var a struct {
		Entries []struct {
			Seq uint64 `json:"seq"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(b, &a); err != nil || len(a.Entries) != 1 {
		return 0, false, fmt.Errorf("answer %s: %v", b, err)
	}
	return a.Entries[0].Seq, true, nil
}

type storedEntry struct {
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
}

// readAll reads every entry of chat/user:<user>.
func (p *publisher) readAll(tb testing.TB, user string) []storedEntry {
	tb.Helper()
	var out []storedEntry
	after := uint64(0)
	for {
		req, err := http.NewRequest("GET", fmt.Sprintf("%s/v1/channels/chat/user:%s?after=%d&limit=1000", p.url, user, after), nil)
		if err != nil {
			tb.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+p.key)
		resp, err := p.client.Do(req)
		if err != nil {
			tb.Fatalf("read %s: %v", user, err)
		}
		var page struct {
			Entries []storedEntry `json:"entries"`
			More    bool          `json:"more"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			tb.Fatalf("read %s: HTTP %d: %v", user, resp.StatusCode, err)
		}
		out = append(out, page.Entries...)
		if !page.More || len(page.Entries) == 0 {
			return out
		}
		after = page.Entries[len(page.Entries)-1].Seq
	}
}

// checkDurable verifies that every acked publish is stored with its seq and
// data, and that each channel's seqs run 1, 2, 3... without a gap.
func checkDurable(tb testing.TB, p *publisher, users []string, acks []ack) {
	tb.Helper()
	stored := map[string]map[uint64]string{}
	for _, u := range users {
		entries := p.readAll(tb, u)
		m := make(map[uint64]string, len(entries))
		for i, e := range entries {
			if e.Seq != uint64(i+1) {
				tb.Fatalf("chat/user:%s: entry %d has seq %d; want %d (a gap or a reorder)", u, i, e.Seq, i+1)
			}
			m[e.Seq] = string(e.Data)
		}
		stored[u] = m
	}
	for _, a := range acks {
		got, ok := stored[a.user][a.seq]
		if !ok {
			tb.Fatalf("chat/user:%s seq %d was acked but is lost", a.user, a.seq)
		}
		if got != a.data {
			tb.Fatalf("chat/user:%s seq %d holds %s; the acked publish was %s", a.user, a.seq, got, a.data)
		}
	}
}

// hammer runs workers publishers until stop is closed or the server goes
// away, and returns what was acked. It calls onAck after each ack.
func hammer(p *publisher, round, workers int, users []string, stop <-chan struct{}, onAck func(n int)) []ack {
	var (
		mu   sync.Mutex
		acks []ack
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				user := users[(w+i)%len(users)]
				data := fmt.Sprintf(`{"r":%d,"w":%d,"i":%d}`, round, w, i)
				seq, ok, err := p.publish(ctx, user, data)
				if err != nil {
					return // the server is gone
				}
				if ok {
					mu.Lock()
					acks = append(acks, ack{user: user, seq: seq, data: data})
					n := len(acks)
					mu.Unlock()
					onAck(n)
				}
			}
		})
	}
	wg.Wait()
	return acks
}

func secretsOf(tb testing.TB, data string) secrets {
	tb.Helper()
	s, err := readSecrets(data)
	if err != nil || s.APIKey == "" {
		tb.Fatalf("secrets in %s: %+v, %v", data, s, err)
	}
	return s
}

// skipIfShort skips tests that build and run the binary under -short.
func skipIfShort(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds and runs the binary; skipped with -short")
	}
	if runtime.GOOS == "windows" {
		tb.Skip("uses POSIX signals")
	}
}
