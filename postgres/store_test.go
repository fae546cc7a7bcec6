package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/storetest"
)

// testURL returns the database the tests use, or skips the test.
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("SYNCPOINT_TEST_POSTGRES")
	if u == "" {
		tb.Skip("SYNCPOINT_TEST_POSTGRES is not set: set it to a PostgreSQL URL (postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL store's tests")
	}
	return u
}

// MustCreateSchema creates a schema of its own for the test, dropped with
// everything in it when the test ends, and returns a URL whose connections
// use it.
func MustCreateSchema(tb testing.TB) string {
	tb.Helper()
	base := testURL(tb)
	var b [6]byte
	rand.Read(b[:])
	schema := "sp_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to %s: %v", redact(base), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withParam(tb, base, "search_path", schema)
}

func withParam(tb testing.TB, raw, key, value string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("SYNCPOINT_TEST_POSTGRES: %v", err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the database"
	}
	return u.Redacted()
}

// MustOpenStore opens a store in a schema of its own, closed when the test
// ends.
func MustOpenStore(tb testing.TB) *Store {
	tb.Helper()
	return MustOpenStoreURL(tb, MustCreateSchema(tb), Options{})
}

// MustOpenStoreURL opens a store on connString with opts, closed when the
// test ends. Tests keep their pools small: several engineers' tests share
// one server.
func MustOpenStoreURL(tb testing.TB, connString string, opts Options) *Store {
	tb.Helper()
	if opts.MaxConns == 0 {
		opts.MaxConns = 4
	}
	s, err := Open(context.Background(), connString, opts)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(tb testing.TB) syncpoint.Store { return MustOpenStore(tb) },
		storetest.SecondHandle(func(tb testing.TB, first syncpoint.Store) syncpoint.Store {
			return MustOpenStoreURL(tb, first.(*Store).connStr, Options{})
		}))
}
