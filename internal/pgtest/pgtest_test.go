package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func connect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func count(tb testing.TB, conn *pgx.Conn) int {
	tb.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM t`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestKillAndStart crashes the server and starts it again: a connection
// of before is broken, a new one works, and what was committed is there.
// A fast Stop and a Start then do the same.
func TestKillAndStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	s := Start(t)
	ctx := context.Background()
	conn := connect(t, s.URL())
	if _, err := conn.Exec(ctx, `CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)`); err != nil {
		t.Fatal(err)
	}

	s.Kill()
	if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("a connection to the killed server still works")
	}
	if c, err := pgx.Connect(ctx, s.URL()); err == nil {
		c.Close(ctx)
		t.Fatal("the killed server takes connections")
	}
	s.Start()
	conn = connect(t, s.URL())
	if n := count(t, conn); n != 2 {
		t.Fatalf("after a crash: %d rows, want the 2 committed", n)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO t VALUES (3)`); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("a connection to the stopped server still works")
	}
	s.Stop() // stopping a stopped server does nothing
	s.Start()
	s.Start() // nor does starting a running one
	if n := count(t, connect(t, s.URL())); n != 3 {
		t.Fatalf("after a restart: %d rows, want 3", n)
	}
}

// A server whose port another socket took says so, which is what Start
// picks another port on.
func TestStartSaysWhenThePortIsTaken(t *testing.T) {
	s := Start(t)
	s.Stop()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
	if err != nil {
		t.Skipf("the stopped server's port was taken before the test could: %v", err)
	}
	defer ln.Close()
	if err := s.start(); !errors.Is(err, errPortTaken) {
		t.Fatalf("start on a taken port: %v, want errPortTaken", err)
	}
	ln.Close()
	if err := s.start(); err != nil {
		t.Fatalf("start once the port is free: %v", err)
	}
}
