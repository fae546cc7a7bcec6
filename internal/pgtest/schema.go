package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the shared PostgreSQL server of the tests that need one.
const Env = "SYNCPOINT_TEST_POSTGRES"

// Schema returns a URL on the server Env names whose connections use a
// schema of the test's own, dropped with everything in it when the test
// ends, so tests running at once never see each other's tables. The pool
// is capped at poolMax connections, since every test shares the server.
// Without Env the test is skipped.
func Schema(tb testing.TB, poolMax int) string {
	tb.Helper()
	base := os.Getenv(Env)
	if base == "" {
		tb.Skip(Env + " is not set: set it to a PostgreSQL URL (postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the tests on the PostgreSQL store")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "sp_test_" + hex.EncodeToString(b[:])
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("pool_max_conns", strconv.Itoa(poolMax))
	u.RawQuery = q.Encode()
	return u.String()
}
