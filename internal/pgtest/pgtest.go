// Package pgtest runs a private PostgreSQL server for tests that must stop,
// crash or restart the database, which they cannot do to the server that
// SYNCPOINT_TEST_POSTGRES names and other tests share.
//
// Start runs initdb and postgres from the newest /usr/lib/postgresql/*/bin
// in a temporary directory, on a free loopback port, with trust
// authentication; as root it runs them as the postgres OS user through
// runuser, since PostgreSQL refuses to run as root. A test whose machine
// lacks them is skipped. The server keeps fsync on, so what it
// acknowledged survives a Kill as it would a crash.
package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds initdb, a start (crash recovery included) and a
// shutdown.
const startTimeout = 60 * time.Second

// Server is a PostgreSQL server of one test. Its methods must be called
// from the test's goroutine: they fail the test with t.Fatal.
type Server struct {
	tb   testing.TB
	dir  string // owned by the server's user: data/, the socket, the log
	port int
	run  func(name string, args ...string) *exec.Cmd

	mu     sync.Mutex
	pid    int           // the postmaster's, 0 while stopped
	last   int           // the pid of the postmaster before, killed or stopped
	exited chan struct{} // closed when the started process has exited
}

// Start initializes a database cluster and starts a server on it; the
// server is stopped and its directory removed when the test ends. It
// skips the test when PostgreSQL's binaries, or as root runuser and the
// postgres user, are missing.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := findBin()
	if bin == "" {
		tb.Skip("pgtest: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
	}
	s := &Server{tb: tb}
	var uid, gid int
	root := os.Geteuid() == 0
	if root {
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			tb.Skip("pgtest: running as root, PostgreSQL must run as another user, and runuser is missing")
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Skip("pgtest: running as root, PostgreSQL must run as another user, and there is no postgres user")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		s.run = func(name string, args ...string) *exec.Cmd {
			return exec.Command(runuser, append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
	} else {
		s.run = func(name string, args ...string) *exec.Cmd { return exec.Command(filepath.Join(bin, name), args...) }
	}
	// Not t.TempDir: its parent is private to root, out of the postgres
	// user's reach.
	dir, err := os.MkdirTemp("", "syncpoint-pgtest-")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	s.dir = dir
	tb.Cleanup(s.cleanup)
	if root {
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
	}
	// --no-sync only here: a crash of the machine during a test would lose
	// the cluster anyway, while the server itself keeps fsync on.
	initdb := s.run("initdb", "-D", s.dataDir(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	for attempt := 1; ; attempt++ {
		s.port = freePort(tb)
		err := s.start()
		if err == nil {
			return s
		}
		// The port was free when picked, and any socket of the machine may
		// take it before postgres binds it: pick another.
		if attempt < 5 && errors.Is(err, errPortTaken) {
			continue
		}
		tb.Fatalf("pgtest: start postgres: %v", err)
	}
}

// errPortTaken is a start that failed because the port was in use.
var errPortTaken = errors.New("the port is in use")

// findBin returns the bin directory of the newest PostgreSQL installed,
// or "".
func findBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	dirs = slices.DeleteFunc(dirs, func(d string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if _, err := os.Stat(filepath.Join(d, name)); err != nil {
				return true
			}
		}
		return false
	})
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		if va, vb := version(a), version(b); va != vb {
			if va < vb {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	if len(dirs) == 0 {
		return ""
	}
	return dirs[len(dirs)-1]
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logFile() string { return filepath.Join(s.dir, "postgres.log") }

// URL returns a URL of the server's database "postgres" as its superuser
// postgres; it stays the same across restarts.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Start starts the stopped or killed server again, on its port and data
// directory, and returns once it accepts connections (after crash
// recovery, when it was killed). Starting a running server does nothing.
func (s *Server) Start() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatalf("pgtest: start postgres: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid != 0 {
		return nil
	}
	log, err := os.OpenFile(s.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	var logged int64
	if fi, err := log.Stat(); err == nil {
		logged = fi.Size()
	}
	cmd := s.run("postgres", "-D", s.dataDir(), "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.dir,
		"-c", "max_connections=50", "-c", "shared_buffers=16MB", "-c", "logging_collector=off")
	cmd.Stdout, cmd.Stderr = log, log
	// Should the test binary die, runuser forwards the TERM to postgres,
	// which then shuts down instead of outliving it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.exited = exited
	pid, err := s.waitReady(exited, s.last)
	if err != nil {
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		if pid != 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-exited
		if b, _ := os.ReadFile(s.logFile()); int64(len(b)) > logged && strings.Contains(string(b[logged:]), "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return fmt.Errorf("%w\n%s", err, s.logTail())
	}
	s.pid, s.last = pid, pid
	return nil
}

// waitReady waits for postmaster.pid to say the server is ready, and
// returns the postmaster's pid. A killed server's file says ready too,
// with the dead postmaster's pid, old.
func (s *Server) waitReady(exited <-chan struct{}, old int) (int, error) {
	deadline := time.Now().Add(startTimeout)
	pidFile := filepath.Join(s.dataDir(), "postmaster.pid")
	for {
		// Lines: pid, data dir, start time, port, socket dir, listen
		// address, shared memory key, status.
		b, _ := os.ReadFile(pidFile)
		lines := strings.Split(string(b), "\n")
		pid := 0
		if len(lines) >= 8 {
			pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
			if pid > 0 && pid != old && strings.TrimSpace(lines[7]) == "ready" && processAlive(pid) {
				return pid, nil
			}
		}
		select {
		case <-exited:
			return 0, errors.New("postgres exited")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return pid, fmt.Errorf("not ready after %v", startTimeout)
		}
	}
}

// Stop shuts the server down fast (SIGINT: open transactions roll back,
// connections are closed) and returns once it has exited.
func (s *Server) Stop() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid == 0 {
		return
	}
	syscall.Kill(s.pid, syscall.SIGINT)
	select {
	case <-s.exited:
		s.pid = 0
	case <-time.After(startTimeout):
		s.kill()
		s.tb.Fatalf("pgtest: postgres did not stop within %v\n%s", startTimeout, s.logTail())
	}
}

// Kill crashes the server: the postmaster gets SIGKILL, and so does every
// process of it at once after, so the next Start runs crash recovery. It
// returns once they are all gone.
func (s *Server) Kill() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid == 0 {
		return
	}
	if err := s.kill(); err != nil {
		s.tb.Fatalf("pgtest: kill postgres: %v", err)
	}
}

// kill is Kill with s.mu held.
func (s *Server) kill() error {
	syscall.Kill(s.pid, syscall.SIGKILL)
	s.pid = 0
	// Every process of the server works in the data directory, so that
	// is how its children are found, before and after the postmaster is
	// gone. A new postmaster refuses to start while one of them still has
	// the old shared memory attached.
	deadline := time.Now().Add(startTimeout)
	for {
		procs := processesIn(s.dataDir())
		if len(procs) == 0 {
			break
		}
		for _, p := range procs {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of the server outlived SIGKILL", procs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(time.Until(deadline)):
		return errors.New("runuser did not exit after its postmaster")
	}
}

// processesIn lists the live processes whose working directory is dir.
func processesIn(dir string) []int {
	cwds, _ := filepath.Glob("/proc/[0-9]*/cwd")
	var out []int
	for _, cwd := range cwds {
		if d, err := os.Readlink(cwd); err != nil || d != dir {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(cwd))); err == nil && processAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// processAlive reports whether pid runs: it exists and is no zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// logTail is the end of the server's log, for a failure's message.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logFile())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (s *Server) cleanup() {
	s.mu.Lock()
	if s.pid != 0 {
		syscall.Kill(s.pid, syscall.SIGINT)
		select {
		case <-s.exited:
			s.pid = 0
		case <-time.After(10 * time.Second):
			s.kill()
		}
	}
	s.mu.Unlock()
	if err := os.RemoveAll(s.dir); err != nil {
		s.tb.Errorf("pgtest: %v", err)
	}
}
