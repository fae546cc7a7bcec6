// Package natstest runs a private nats-server for tests that must stop or
// restart NATS, which they cannot do to the server SYNCPOINT_TEST_NATS
// names and other tests share.
package natstest

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Bin is where Debian's nats-server package installs the server.
const Bin = "/usr/sbin/nats-server"

// Server is a nats-server process on a fixed loopback port, so a test can
// kill it and start it again where its clients look for it. Its methods
// must be called from the test's goroutine.
type Server struct {
	tb   testing.TB
	port string
	cmd  *exec.Cmd
}

// Start runs a server on a free port and stops it when the test ends; it
// skips the test when nats-server is not installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if _, err := os.Stat(Bin); err != nil {
		tb.Skipf("%s is not installed (%v); install nats-server to run this test", Bin, err)
	}
	s := &Server{tb: tb, port: freePort(tb)}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// URL is the server's nats:// URL.
func (s *Server) URL() string { return "nats://127.0.0.1:" + s.port }

// Start starts the server again after Stop, on the same port, and waits
// until it accepts connections.
func (s *Server) Start() {
	s.tb.Helper()
	s.cmd = exec.Command(Bin, "-a", "127.0.0.1", "-p", s.port)
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+s.port, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("nats-server on port %s does not accept connections: %v", s.port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server: its clients see the connection drop at once.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// freePort finds a port nothing listens on, by asking the kernel for one.
func freePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
