// Package servetest builds the syncpoint binary and runs `syncpoint serve`
// as a child process, for tests that need the real thing: to SIGKILL it
// and start it again on its data, or to read its memory from /proc.
//
// A server keeps its two ports across restarts, so clients and proxies
// find it where they left it. The ports are picked below the kernel's
// ephemeral range: a port from that range could be taken, while the
// server is down, by one of the many outgoing connections a test makes.
package servetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long a start, crash recovery included, may take.
const StartTimeout = 60 * time.Second

// Build builds the syncpoint command into dir and returns the binary's
// path. Call it once per test binary, from TestMain.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "syncpoint")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/syncpoint/syncpoint/cmd/syncpoint").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// Config says how to run a server.
type Config struct {
	Bin  string // from Build
	Data string // the data dir, kept across restarts; "" is a temporary one
	// YAML is the config file's text: bizzes and settings.
	YAML string
	// APIKey and TokenSecret are given through the environment.
	APIKey, TokenSecret string
	Args                []string // more flags of serve
	Env                 []string // more environment
}

// Server is a `syncpoint serve` process, started again by Restart after
// Kill or Stop. Its methods other than the accessors must be called from
// the test's goroutine.
type Server struct {
	tb       testing.TB
	cfg      Config
	config   string
	httpPort int
	tcpPort  int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *tailBuffer
	starts int
}

// Start starts a server and waits until it answers HTTP. It is killed when
// the test ends.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.Data == "" {
		cfg.Data = filepath.Join(tb.TempDir(), "data")
	}
	s := &Server{tb: tb, cfg: cfg, config: filepath.Join(tb.TempDir(), "syncpoint.yaml")}
	if err := os.WriteFile(s.config, []byte(cfg.YAML), 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if s.Running() {
			s.Kill()
		}
	})
	for attempt := 0; ; attempt++ {
		s.httpPort, s.tcpPort = freePort(tb), freePort(tb)
		err := s.start()
		if err == nil {
			return s
		}
		// Another process may have bound a port between the check and the
		// start; try others.
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			tb.Fatal(err)
		}
	}
}

// Restart starts the server again on its ports and data dir.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.Running() {
		s.tb.Fatal("servetest: Restart of a running server")
	}
	if err := s.start(); err != nil {
		s.tb.Fatal(err)
	}
}

func (s *Server) start() error {
	args := append([]string{"serve", "--data", s.cfg.Data, "--config", s.config,
		"--listen", s.HTTPAddr(), "--tcp-listen", s.TCPAddr()}, s.cfg.Args...)
	cmd := exec.Command(s.cfg.Bin, args...)
	cmd.Dir = s.cfg.Data
	dieWithParent(cmd)
	if err := os.MkdirAll(s.cfg.Data, 0o700); err != nil {
		return err
	}
	env := childEnv()
	if s.cfg.APIKey != "" {
		env = append(env, "SYNCPOINT_API_KEY="+s.cfg.APIKey)
	}
	if s.cfg.TokenSecret != "" {
		env = append(env, "SYNCPOINT_TOKEN_SECRET="+s.cfg.TokenSecret)
	}
	cmd.Env = append(env, s.cfg.Env...)
	log := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("servetest: start: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited, s.log = cmd, exited, log
	s.starts++
	s.mu.Unlock()

	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(StartTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("servetest: serve exited early (%v):\n%s", cmd.ProcessState, log)
		default:
		}
		// server.json of a killed predecessor may still be there: wait
		// for this process's own, then for an HTTP answer.
		if pid, err := readPID(s.cfg.Data); err == nil && pid == cmd.Process.Pid {
			if resp, err := hc.Get(s.URL() + "/healthz"); err == nil {
				resp.Body.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("servetest: serve did not start within %s:\n%s", StartTimeout, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "server.json"))
	if err != nil {
		return 0, err
	}
	var si struct {
		PID int `json:"pid"`
	}
	err = json.Unmarshal(b, &si)
	return si.PID, err
}

// URL is the server's base URL.
func (s *Server) URL() string { return "http://" + s.HTTPAddr() }

// HTTPAddr is the host:port of the HTTP listener.
func (s *Server) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(s.httpPort) }

// TCPAddr is the host:port of the raw TCP listener.
func (s *Server) TCPAddr() string { return "127.0.0.1:" + strconv.Itoa(s.tcpPort) }

// Data is the data dir.
func (s *Server) Data() string { return s.cfg.Data }

// PID is the process id of the current (or last) process.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Starts counts the processes started, restarts included.
func (s *Server) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// Running reports whether the current process has not exited.
func (s *Server) Running() bool {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Exited is closed when the current process exits.
func (s *Server) Exited() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exited
}

// Log is the start and the end of what the current process wrote.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Kill sends SIGKILL and waits for the process to go.
func (s *Server) Kill() {
	s.signal(syscall.SIGKILL)
}

// Stop sends SIGTERM and waits for a clean exit; it returns the exit code.
func (s *Server) Stop() int {
	s.signal(syscall.SIGTERM)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.ProcessState.ExitCode()
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(StartTimeout):
		cmd.Process.Kill()
		<-exited
		s.tb.Errorf("servetest: serve did not exit after %v; killed", sig)
	}
}

// Memory is what /proc/<pid>/status says of a process's memory, in bytes.
type Memory struct {
	RSS  int64 // VmRSS: resident now
	Peak int64 // VmHWM: the most resident so far
}

// Memory reads the current process's memory from /proc.
func (s *Server) Memory() (Memory, error) {
	return ReadMemory(s.PID())
}

// ReadMemory reads the memory of process pid from /proc/<pid>/status.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		default:
			continue
		}
		f := strings.Fields(rest) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("%s: %q", name, rest)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Memory{}, err
		}
		*dst = n << 10
	}
	if m.RSS == 0 {
		return Memory{}, errors.New("no VmRSS in /proc status")
	}
	return m, nil
}

// WaitReady polls /readyz until it answers 200.
func (s *Server) WaitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(s.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("servetest: not ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// childEnv is the test's environment without syncpoint's own variables, so
// a developer's exported secrets do not reach the server.
func childEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SYNCPOINT_") {
			out = append(out, kv)
		}
	}
	return out
}

// freePort returns a loopback port that nothing listens on, below the
// ephemeral range when there is room for one there.
func freePort(tb testing.TB) int {
	tb.Helper()
	low := ephemeralLow()
	for range 100 {
		if low <= 11000 {
			break
		}
		p := 10000 + rand.IntN(low-10000)
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			l.Close()
			return p
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// tailBuffer keeps the first and the last part of a process's output, so
// a chatty server under load cannot fill the test's memory.
type tailBuffer struct {
	mu    sync.Mutex
	head  []byte
	tail  []byte
	extra int64 // bytes dropped between head and tail
}

const (
	headBytes = 64 << 10
	tailBytes = 256 << 10
)

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := headBytes - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	// Trimmed only once twice over, so a stream of small writes is not
	// copied on each.
	if len(b.tail) > 2*tailBytes {
		over := len(b.tail) - tailBytes
		b.extra += int64(over)
		b.tail = append(b.tail[:0], b.tail[over:]...)
	}
	return n, nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.extra == 0 {
		return string(b.head) + string(b.tail)
	}
	return fmt.Sprintf("%s\n… %d bytes left out …\n%s", b.head, b.extra, b.tail)
}
