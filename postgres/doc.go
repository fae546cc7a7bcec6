// Package postgres is the PostgreSQL Store: syncpoint's logs, sync points,
// devices, bizzes and blobs kept in a PostgreSQL database (13 or newer),
// which several nodes of a cluster share, each with a Store of its own.
//
// # Schema
//
// Open applies the embedded migrations (migrations/NNNN_*.sql) to the
// first schema of the connection's search_path, in one transaction under
// an advisory lock, so that nodes starting at once migrate it once; the
// versions applied are rows of syncpoint_migrations. A node refuses a
// schema newer than it knows (ErrSchemaTooNew). The tables:
//
//	channels          a channel's head: name ("biz/target"), biz, epoch,
//	                    first_seq, last_seq; a NULL epoch is a channel not
//	                    created yet
//	entries           (channel_id, seq) → the entry; gone_at, indexed, is
//	                    when a sweep removes it
//	keys              (channel_id, key) → the seq, op and expiry of the
//	                    key's newest put or delete, in byte order (COLLATE
//	                    "C") for Keys
//	idempotency_keys  (channel_id, key) → seq, content hash, deadline
//	sync_points, user_positions, cursors
//	                  (owner, channel) → epoch, seq, updated_at
//	devices, bizzes, blobs
//	access_tokens     id → the SHA-256 of the secret (unique), user,
//	                    groups, label, times
//	presence_nodes    node → last_beat, indexed, so that beats find the
//	                    long-dead nodes cheaply
//	presence          session → node, device, user, transport,
//	                    connected_at, singles (a jsonb array of
//	                    "biz/target"), join order; indexed by device, by
//	                    user (oldest first) and by node
//
// # Gap-free seqs
//
// A channel's seqs come from its head row, which every transaction that
// appends to the channel locks (SELECT … FOR UPDATE) before it reads
// last_seq, and holds until it commits, when the entries and the new
// last_seq become visible together. So the transactions that write a
// channel run one after another: one takes seqs only after the one before
// has committed, and a channel's committed seqs are always 1…last_seq,
// less what was compacted, trimmed or swept. That is what makes a read of
// "seq > after" safe. A plain sequence would not be: two transactions draw
// ids 10 and 11, 11 commits first, a reader sees it and moves its position
// past 10, which commits a moment later and is never read. Read takes the
// head and the entries in one statement, so from one snapshot, and stops
// at the head's last_seq.
//
// Every writer of heads (appends, sweeps, resets, biz deletes) locks them
// in name order, so transactions of any number of nodes never deadlock on
// them; an append that creates a channel inserts its head first (ON
// CONFLICT DO NOTHING, in name order too), so that there is a row to lock.
//
// # Group commit
//
// Append calls queue for a committer goroutine (Options.Committers says
// how many; one by default), which has a connection of its own, so that
// reads never keep appends waiting for one. A committer takes every queued
// call, waits a moment (Options.CommitWindow) for the callers of its last
// transaction to come back, and appends them all in one transaction of two
// pipelined round trips: the first begins it, locks the heads and reads
// the idempotency keys and record keys the requests name; the requests are
// then settled in call order in Go (idempotency key, then IfKeySeq, then
// the append, with compaction and MaxBacklog trimming applied as the batch
// goes, so that entries replaced within the batch are never written); the
// second writes entries, keys and heads with unnest arrays, deletes what
// compaction and trimming removed from earlier transactions, and commits.
// While a transaction waits for its WAL flush, calls gather for the next,
// so transactions grow with load and durability costs one flush per
// transaction, not per call.
//
// # Durability
//
// A call is answered after its transaction's COMMIT returns, which with
// synchronous_commit on (PostgreSQL's default, and raised to on for the
// store's connections where a role or database set it off) is after the
// WAL is flushed: an acknowledged append survives a crash of syncpoint or
// of PostgreSQL. With synchronous replication, a commit is visible on the
// primary before the standby has it, as PostgreSQL documents.
//
// # Retries and exactly-once
//
// Lost connections, a server that shuts down or starts, serialization
// failures and deadlocks (SQLSTATE class 08, 57P0x, 40001, 40P01) are
// retried with jittered backoff for up to Options.RetryTimeout; then, and
// at once for further operations while the outage lasts, writes fail with
// an error that wraps syncpoint.ErrUnavailable, which the API answers with
// 503, and Health says so. pgx's pool replaces broken connections, so the
// store recovers by itself when the database is back.
//
// A retry can apply a write twice only when the connection is lost after
// COMMIT was sent: the transaction may have committed with only its answer
// lost. Appends, sweeps, resets, biz and token changes (whose second run
// would append again, miscount, reset again, or meet their own first run)
// therefore learn their transaction's id in their first round trip and,
// after such a loss, ask the database (pg_xact_status) whether it
// committed before trying again; only an aborted one runs again. The
// other writes (sync points, user
// positions, cursors, devices, blobs) are idempotent, so running them twice
// leaves what running them once does. Should the database stay unreachable
// past the retry budget while such an outcome is unknown, the append fails
// with ErrUnavailable without knowing whether it committed; a caller's
// retry with the same idempotency key is then exactly-once, and one without
// a key may append the entry twice.
//
// # Expiry and trimming
//
// Sweep finds due entries through the gone_at index, idempotency keys
// through their deadline index and blobs through their expiry index, a
// chunk at a time, never scanning a table; a chunk locks its channels'
// heads before it deletes and deletes only what is still due, so sweeps on
// several nodes and appends run safely side by side. MaxBacklog trimming
// and compaction delete by primary key within the append's transaction.
//
// # Cluster
//
// Store.Directory is the cluster's syncpoint.Directory: a session is
// listed from its Join until its Leave, while its node's last beat is
// within Options.PresenceGrace; a Beat replaces the node's sessions in
// one transaction and deletes the nodes silent for ten grace periods.
// Store.Heads reads the heads of many channels in one statement, for a
// node that may have missed broker messages. Store.Leases is the
// cluster's syncpoint.Leases, on session-level advisory locks, each held
// on a connection taken out of the pool for as long as it is held; the
// Leases doc says how a lost connection hands a lease over.
//
// # Epochs
//
// Epochs are random and stored in the heads. A database restored from a
// backup keeps them; docs/operations.md gives the statement that gives
// every channel a new one after a restore, so that no device takes the
// rewound history for its own.
package postgres
