-- The first schema of syncpoint's PostgreSQL store. Integrity between the
-- tables is kept by the store (every change to a channel's entries is made
-- under its head row's lock), not by foreign keys, whose checks would lock
-- the head rows once more on every insert.

-- A channel's head: its epoch and retained range. Appends lock this row
-- for the whole transaction, which is what keeps seqs gap-free (see
-- doc.go). A row whose epoch is NULL is a channel not created yet: an
-- append inserts it to have something to lock.
CREATE TABLE channels (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name      text NOT NULL UNIQUE, -- "biz/target"
	biz       text NOT NULL,
	epoch     text,
	first_seq bigint NOT NULL DEFAULT 1,
	last_seq  bigint NOT NULL DEFAULT 0
);
CREATE INDEX channels_biz ON channels (biz);

CREATE TABLE entries (
	channel_id      bigint NOT NULL,
	seq             bigint NOT NULL,
	op              text NOT NULL, -- msg, put or delete
	key             text NOT NULL DEFAULT '',
	data            bytea,         -- the JSON bytes as published
	created_at      timestamptz NOT NULL,
	expires_at      timestamptz,
	-- When a sweep removes the entry: expires_at, or for a tombstone (a
	-- compacted delete) the end of its retention if that comes first.
	gone_at         timestamptz,
	conditions      text NOT NULL DEFAULT '', -- JSON; '' matches every device
	origin          text NOT NULL DEFAULT '',
	idempotency_key text NOT NULL DEFAULT '',
	PRIMARY KEY (channel_id, seq)
);
-- The newest put or delete of a key: IfKeySeq, compaction, KeyEntry.
CREATE INDEX entries_key ON entries (channel_id, key, seq) WHERE op <> 'msg';
-- Sweeps walk this index, never the table.
CREATE INDEX entries_gone ON entries (gone_at) WHERE gone_at IS NOT NULL;

CREATE TABLE idempotency_keys (
	channel_id bigint NOT NULL,
	key        text NOT NULL,
	seq        bigint NOT NULL,
	hash       bytea,
	deadline   timestamptz NOT NULL,
	PRIMARY KEY (channel_id, key)
);
CREATE INDEX idempotency_keys_deadline ON idempotency_keys (deadline);

CREATE TABLE sync_points (
	device_id  text NOT NULL,
	channel    text NOT NULL,
	epoch      text NOT NULL,
	seq        bigint NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (device_id, channel)
);

CREATE TABLE user_positions (
	user_id    text NOT NULL,
	channel    text NOT NULL,
	epoch      text NOT NULL,
	seq        bigint NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (user_id, channel)
);

CREATE TABLE cursors (
	reader     text NOT NULL,
	channel    text NOT NULL,
	epoch      text NOT NULL,
	seq        bigint NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (reader, channel)
);

CREATE TABLE devices (
	id          text PRIMARY KEY,
	user_id     text NOT NULL,
	platform    text NOT NULL DEFAULT '',
	app_version text NOT NULL DEFAULT '',
	last_seen   timestamptz NOT NULL
);
CREATE INDEX devices_user ON devices (user_id, last_seen DESC, id);

CREATE TABLE bizzes (
	name     text PRIMARY KEY,
	settings jsonb NOT NULL
);

CREATE TABLE blobs (
	key        text PRIMARY KEY,
	value      bytea NOT NULL,
	expires_at timestamptz
);
CREATE INDEX blobs_expires ON blobs (expires_at) WHERE expires_at IS NOT NULL;
