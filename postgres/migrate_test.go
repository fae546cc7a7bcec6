package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
)

func TestMigrationFiles(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || SchemaVersion() != len(ms) {
		t.Fatalf("%d migrations, SchemaVersion %d", len(ms), SchemaVersion())
	}
	for name, fsys := range map[string]fstest.MapFS{
		"a hole":     {"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}},
		"no number":  {"migrations/init.sql": {}},
		"version 0":  {"migrations/0000_zero.sql": {}},
		"two of one": {"migrations/0001_a.sql": {}, "migrations/01_b.sql": {}},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("migrations with %s load", name)
		}
	}
}

func mustConnect(tb testing.TB, connString string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(context.Background(), connString)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestMigrateStepByStep applies a schema in two releases: the second
// applies only its new migration, and the first then refuses the schema
// as too new, naming both versions.
func TestMigrateStepByStep(t *testing.T) {
	ctx := context.Background()
	conn := mustConnect(t, MustCreateSchema(t))
	v1 := fstest.MapFS{"migrations/0001_a.sql": {Data: []byte(`CREATE TABLE a (x int); INSERT INTO a VALUES (1);`)}}
	v2 := fstest.MapFS{
		"migrations/0001_a.sql": v1["migrations/0001_a.sql"],
		"migrations/0002_b.sql": {Data: []byte(`ALTER TABLE a ADD COLUMN y int NOT NULL DEFAULT 2;`)},
	}
	for i, step := range []struct {
		fsys     fstest.MapFS
		from, to int
	}{{v1, 0, 1}, {v1, 1, 1}, {v2, 1, 2}, {v2, 2, 2}} {
		from, to, err := migrate(ctx, conn, step.fsys)
		if err != nil || from != step.from || to != step.to {
			t.Fatalf("step %d: migrated %d to %d (%v), want %d to %d", i, from, to, err, step.from, step.to)
		}
	}
	var rows int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM a WHERE y = 2`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("table a after both migrations: %d rows (%v), want the one row, migrated once", rows, err)
	}
	_, _, err := migrate(ctx, conn, v1)
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "version 2") || !strings.Contains(err.Error(), "up to 1") {
		t.Fatalf("the older release on the newer schema: %v, want ErrSchemaTooNew naming versions 2 and 1", err)
	}
	// A failing migration leaves the schema as it was.
	bad := fstest.MapFS{
		"migrations/0001_a.sql": v1["migrations/0001_a.sql"],
		"migrations/0002_b.sql": v2["migrations/0002_b.sql"],
		"migrations/0003_c.sql": {Data: []byte(`CREATE TABLE c (x int); SELECT no_such_function();`)},
	}
	if _, _, err := migrate(ctx, conn, bad); err == nil || !strings.Contains(err.Error(), "0003_c.sql") {
		t.Fatalf("a failing migration: %v, want an error naming it", err)
	}
	var c *string
	if err := conn.QueryRow(ctx, `SELECT to_regclass('c')::text`).Scan(&c); err != nil || c != nil {
		t.Fatalf("table c after its migration failed: %v %v, want none", c, err)
	}
}

// TestOpenRefusesNewerSchema has a store meet a schema a newer syncpoint
// migrated.
func TestOpenRefusesNewerSchema(t *testing.T) {
	url := MustCreateSchema(t)
	s := MustOpenStoreURL(t, url, Options{MaxConns: 2})
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO syncpoint_migrations (version, name) VALUES ($1, 'from the future')`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(context.Background(), url, Options{MaxConns: 2})
	want := fmt.Sprintf("version %d and this syncpoint knows versions up to %d", SchemaVersion()+1, SchemaVersion())
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), want) {
		t.Fatalf("open on a newer schema: %v, want ErrSchemaTooNew saying %q", err, want)
	}
}

// TestConcurrentOpen starts several nodes at once on an empty schema:
// each opens, and the schema is migrated once.
func TestConcurrentOpen(t *testing.T) {
	url := MustCreateSchema(t)
	const nodes = 4
	var wg sync.WaitGroup
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), url, Options{MaxConns: 2})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
			continue
		}
		stores[i].Close()
	}
	conn := mustConnect(t, url)
	var n, max int
	if err := conn.QueryRow(context.Background(), `SELECT count(*), max(version) FROM syncpoint_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || max != SchemaVersion() {
		t.Fatalf("%d migrations recorded up to %d, want each of %d once", n, max, SchemaVersion())
	}
}

// TestOpenWithoutSchema points a store at a search_path whose schema does
// not exist.
func TestOpenWithoutSchema(t *testing.T) {
	url := withParam(t, testURL(t), "search_path", "sp_test_no_such_schema")
	_, err := Open(context.Background(), url, Options{MaxConns: 2})
	if err == nil || !strings.Contains(err.Error(), "search_path") {
		t.Fatalf("open without a schema: %v, want an error about search_path", err)
	}
}

// TestOpenKeepsPasswordsOutOfErrors opens stores with passwords in bad
// URLs.
func TestOpenKeepsPasswordsOutOfErrors(t *testing.T) {
	for _, url := range []string{
		"postgres://u:s3cret@127.0.0.1:1/db?sslmode=disable", // nothing listens on port 1
		"postgres://u:s3cret@127.0.0.1:5432/db?sslmode=nonsense",
		"postgres://u:s3cret@[::1/db",
	} {
		_, err := Open(context.Background(), url, Options{MaxConns: 2})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("open %s: %v, want an error without the password", strings.ReplaceAll(url, "s3cret", "…"), err)
		}
	}
}
