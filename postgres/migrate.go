package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one file of migrations/, named NNNN_what.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in version order. Their
// versions must run 1, 2, 3… without a hole, which a test checks.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: want a name like 0001_what.sql", base)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema this build knows.
func SchemaVersion() int {
	ms, err := loadMigrations(migrationFiles)
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// ErrSchemaTooNew is wrapped by Open's error when the database was
// migrated by a newer syncpoint than this one.
var ErrSchemaTooNew = errors.New("the database schema is newer than this syncpoint")

// migrate brings the current schema (the first of search_path) up to the
// newest embedded version, in one transaction under an advisory lock, so
// that nodes starting at once apply each migration exactly once and none
// of them sees a half-migrated schema.
func migrate(ctx context.Context, conn *pgx.Conn, fsys fs.FS) (from, to int, err error) {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return 0, 0, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(ctx)
	var schema *string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return 0, 0, err
	}
	if schema == nil {
		return 0, 0, fmt.Errorf("no schema of the search_path exists: create it, or set search_path in the URL to one that does")
	}
	// Keyed by schema, so that stores in other schemas of one database
	// (tests, or several deployments) do not wait for each other.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('syncpoint migrate ' || current_schema(), 0))`); err != nil {
		return 0, 0, err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS syncpoint_migrations (
		version    int PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return 0, 0, err
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM syncpoint_migrations`).Scan(&from); err != nil {
		return 0, 0, err
	}
	known := 0
	if len(ms) > 0 {
		known = ms[len(ms)-1].version
	}
	if from > known {
		return from, from, fmt.Errorf("%w: schema %q is at version %d and this syncpoint knows versions up to %d; run the newer syncpoint that migrated it, or point this one at another database or schema",
			ErrSchemaTooNew, *schema, from, known)
	}
	for _, m := range ms[from:] {
		if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return from, 0, fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO syncpoint_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return from, 0, fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return from, 0, err
	}
	return from, known, nil
}
