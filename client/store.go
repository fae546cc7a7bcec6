package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/syncpoint/syncpoint"
)

// schemaVersion is the newest local schema this SDK writes. A database
// written by a newer SDK is refused rather than misread.
const schemaVersion = 2

// migrations[i] takes the schema from version i to i+1; each runs in its own
// transaction.
var migrations = []string{
	`CREATE TABLE syncpoint_positions (
		channel    TEXT PRIMARY KEY,
		epoch      TEXT NOT NULL,
		seq        INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE syncpoint_records (
		channel    TEXT NOT NULL,
		key        TEXT NOT NULL,
		seq        INTEGER NOT NULL,
		data       BLOB,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		origin     TEXT NOT NULL,
		PRIMARY KEY (channel, key)
	) WITHOUT ROWID;
	CREATE TABLE syncpoint_notices (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		channel   TEXT NOT NULL,
		kind      TEXT NOT NULL,
		first_seq INTEGER NOT NULL
	);`,
	// The outbox of local changes, in order. write_id, kind and base_seq
	// are fixed together, before the first send, so a resend is the same
	// write. syncpoint_server_records holds the server's version of each
	// record with changes in the outbox (and, briefly, of records whose
	// newest server seq the channel's position has not reached).
	`CREATE TABLE syncpoint_outbox (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		channel    TEXT NOT NULL,
		key        TEXT NOT NULL,
		op         TEXT NOT NULL,
		data       BLOB,
		created_at INTEGER NOT NULL,
		write_id   TEXT,
		kind       TEXT,
		base_seq   INTEGER
	);
	CREATE INDEX syncpoint_outbox_key ON syncpoint_outbox (channel, key, id);
	CREATE INDEX syncpoint_outbox_write ON syncpoint_outbox (write_id, id) WHERE write_id IS NOT NULL;
	CREATE TABLE syncpoint_server_records (
		channel    TEXT NOT NULL,
		key        TEXT NOT NULL,
		seq        INTEGER NOT NULL,
		live       INTEGER NOT NULL,
		data       BLOB,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		origin     TEXT NOT NULL,
		PRIMARY KEY (channel, key)
	) WITHOUT ROWID;
	CREATE TABLE syncpoint_channels (
		channel TEXT PRIMARY KEY
	) WITHOUT ROWID;
	ALTER TABLE syncpoint_notices ADD COLUMN payload BLOB;`,
}

// The kinds of syncpoint_notices rows.
const (
	noticeReset      = "reset"
	noticeGap        = "gap"
	noticeConflict   = "conflict"    // payload: a Conflict in JSON
	noticeWriteError = "write_error" // payload: a WriteError in JSON
)

// openDB opens path in WAL mode. synchronous=FULL because a commit that a
// power cut could undo after we acked it would be lost for good: the server
// would not send it again.
func openDB(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("open local db: Config.DBPath is empty")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open local db: path %q: '?' and '#' are not allowed", path)
	}
	dsn := path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open local db: %w", err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS syncpoint_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`); err != nil {
		return fmt.Errorf("open local db: %w", err)
	}
	for {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate local db: %w", err)
		}
		v, err := readSchemaVersion(ctx, tx)
		if err != nil {
			tx.Rollback()
			return err
		}
		if v > schemaVersion {
			tx.Rollback()
			return fmt.Errorf("migrate local db: schema version %d was written by a newer SDK (this one knows up to %d)", v, schemaVersion)
		}
		if v == schemaVersion {
			return tx.Rollback()
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate local db to version %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO syncpoint_meta (name, value) VALUES ('schema_version', ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, strconv.Itoa(v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate local db to version %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate local db to version %d: %w", v+1, err)
		}
	}
}

func readSchemaVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var s string
	err := tx.QueryRowContext(ctx, `SELECT value FROM syncpoint_meta WHERE name = 'schema_version'`).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("read schema version: %q is not a version", s)
	}
	return v, nil
}

// dbTx is what *sql.Tx and *cachedTx share.
type dbTx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// cachedTx is a transaction that prepares each statement once. The driver
// parses a statement on every use otherwise, which is most of the cost of
// applying a push or a result of many records.
type cachedTx struct {
	*sql.Tx
	stmts map[string]*sql.Stmt
}

func newCachedTx(tx *sql.Tx) *cachedTx { return &cachedTx{Tx: tx, stmts: make(map[string]*sql.Stmt)} }

// stmt returns q prepared in the transaction, which closes it at its end.
func (t *cachedTx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if s := t.stmts[q]; s != nil {
		return s, nil
	}
	s, err := t.Tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	t.stmts[q] = s
	return s, nil
}

func (t *cachedTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	s, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

func (t *cachedTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	s, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

func (t *cachedTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	s, err := t.stmt(ctx, q)
	if err != nil {
		return t.Tx.QueryRowContext(ctx, q, args...) // reports the same error through Scan
	}
	return s.QueryRowContext(ctx, args...)
}

// queryer is what *sql.DB and *sql.Tx share.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func loadPositions(ctx context.Context, q queryer) (map[string]syncpoint.Position, error) {
	rows, err := q.QueryContext(ctx, `SELECT channel, epoch, seq FROM syncpoint_positions`)
	if err != nil {
		return nil, fmt.Errorf("load positions: %w", err)
	}
	defer rows.Close()
	out := make(map[string]syncpoint.Position)
	for rows.Next() {
		var ch, epoch string
		var seq int64
		if err := rows.Scan(&ch, &epoch, &seq); err != nil {
			return nil, fmt.Errorf("load positions: %w", err)
		}
		out[ch] = syncpoint.Position{Epoch: epoch, Seq: uint64(seq)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load positions: %w", err)
	}
	return out, nil
}

func savePosition(ctx context.Context, tx dbTx, ch string, p syncpoint.Position, nowMs int64) error {
	seq, err := dbSeq(p.Seq)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO syncpoint_positions (channel, epoch, seq, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (channel) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, updated_at = excluded.updated_at`,
		ch, p.Epoch, seq, nowMs)
	if err != nil {
		return fmt.Errorf("save position %s: %w", ch, err)
	}
	return nil
}

// dbSeq converts a seq for SQLite, whose integers are signed.
func dbSeq(seq uint64) (int64, error) {
	if seq > math.MaxInt64 {
		return 0, syncpoint.Errorf(syncpoint.CodeMalformed, "seq %d is beyond what the local store keeps", seq)
	}
	return int64(seq), nil
}

// putRecord stores a pushed put, unless the record is already at a newer
// seq: the result of this device's own write can get there first.
func putRecord(ctx context.Context, tx dbTx, e *Entry) error {
	seq, err := dbSeq(e.Seq)
	if err != nil {
		return err
	}
	var data any
	if e.Data != nil {
		data = []byte(e.Data)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO syncpoint_records (channel, key, seq, data, created_at, expires_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (channel, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, created_at = excluded.created_at,
			expires_at = excluded.expires_at, origin = excluded.origin
		WHERE excluded.seq >= syncpoint_records.seq`,
		e.Channel, e.Key, seq, data, unixMs(e.CreatedAt), unixMs(e.ExpiresAt), e.Origin)
	if err != nil {
		return fmt.Errorf("put record %s/%s: %w", e.Channel, e.Key, err)
	}
	return nil
}

// deleteRecord applies a pushed delete at seq, unless the record is already
// at a newer one.
func deleteRecord(ctx context.Context, tx dbTx, ch, key string, seq uint64) error {
	s, err := dbSeq(seq)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM syncpoint_records WHERE channel = ? AND key = ? AND seq <= ?`, ch, key, s); err != nil {
		return fmt.Errorf("delete record %s/%s: %w", ch, key, err)
	}
	return nil
}

// dropChannel forgets what the server said of ch: records and position.
// Local changes still in the outbox stay, are shown again on their own, and
// are judged against the channel's new history.
func dropChannel(ctx context.Context, tx *sql.Tx, ch string) error {
	for _, q := range []string{
		`DELETE FROM syncpoint_records WHERE channel = ?`,
		`DELETE FROM syncpoint_positions WHERE channel = ?`,
		`DELETE FROM syncpoint_server_records AS s WHERE channel = ?1
			AND NOT EXISTS (SELECT 1 FROM syncpoint_outbox o WHERE o.channel = s.channel AND o.key = s.key)`,
		`UPDATE syncpoint_server_records SET seq = 0, live = 0, data = NULL WHERE channel = ?`,
		`INSERT INTO syncpoint_records (channel, key, seq, data, created_at, expires_at, origin)
			SELECT o.channel, o.key, 0, o.data, o.created_at, 0, '' FROM syncpoint_outbox o
			WHERE o.channel = ?1 AND o.op = 'put' AND o.id = (SELECT max(id) FROM syncpoint_outbox m WHERE m.channel = o.channel AND m.key = o.key)`,
	} {
		if _, err := tx.ExecContext(ctx, q, ch); err != nil {
			return fmt.Errorf("drop channel %s: %w", ch, err)
		}
	}
	return nil
}

type notice struct {
	id       int64
	channel  string
	kind     string
	firstSeq uint64
	payload  []byte
}

func addNotice(ctx context.Context, tx dbTx, n notice) error {
	seq, err := dbSeq(n.firstSeq)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO syncpoint_notices (channel, kind, first_seq, payload) VALUES (?, ?, ?, ?)`, n.channel, n.kind, seq, n.payload); err != nil {
		return fmt.Errorf("add %s notice: %w", n.kind, err)
	}
	return nil
}

func loadNotices(ctx context.Context, db *sql.DB) ([]notice, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, channel, kind, first_seq, payload FROM syncpoint_notices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("load notices: %w", err)
	}
	defer rows.Close()
	var out []notice
	for rows.Next() {
		var n notice
		var first int64
		if err := rows.Scan(&n.id, &n.channel, &n.kind, &first, &n.payload); err != nil {
			return nil, fmt.Errorf("load notices: %w", err)
		}
		n.firstSeq = uint64(first)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load notices: %w", err)
	}
	return out, nil
}

// getRecord returns a record's data unless it expired at nowMs.
func getRecord(ctx context.Context, db *sql.DB, ch, key string, nowMs int64) (json.RawMessage, bool, error) {
	var data []byte
	var expires int64
	err := db.QueryRowContext(ctx, `SELECT data, expires_at FROM syncpoint_records WHERE channel = ? AND key = ?`, ch, key).Scan(&data, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %s/%s: %w", ch, key, err)
	}
	if expires != 0 && nowMs >= expires {
		return nil, false, nil
	}
	return json.RawMessage(data), true, nil
}

func listRecords(ctx context.Context, db *sql.DB, ch string, nowMs int64) (map[string]json.RawMessage, error) {
	rows, err := db.QueryContext(ctx, `SELECT key, data FROM syncpoint_records WHERE channel = ? AND (expires_at = 0 OR expires_at > ?)`, ch, nowMs)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", ch, err)
	}
	defer rows.Close()
	out := make(map[string]json.RawMessage)
	for rows.Next() {
		var key string
		var data []byte
		if err := rows.Scan(&key, &data); err != nil {
			return nil, fmt.Errorf("list %s: %w", ch, err)
		}
		out[key] = json.RawMessage(data)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", ch, err)
	}
	return out, nil
}
