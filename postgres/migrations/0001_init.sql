-- The first schema of syncpoint's PostgreSQL store. Names, ids and keys
-- are COLLATE "C": they compare by their bytes, as Go compares strings,
-- whatever the database's collation, and faster. Integrity between the
-- tables is kept by the store (every change to a channel's entries is made
-- under its head row's lock), not by foreign keys, whose checks would lock
-- the head rows once more on every insert.

-- A channel's head: its epoch and retained range. Appends lock this row
-- for the whole transaction, which is what keeps seqs gap-free (see
-- doc.go). A row whose epoch is NULL is a channel not created yet: an
-- append inserts it to have something to lock.
CREATE TABLE channels (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name      text COLLATE "C" NOT NULL UNIQUE, -- "biz/target"
	biz       text COLLATE "C" NOT NULL,
	epoch     text,
	first_seq bigint NOT NULL DEFAULT 1,
	last_seq  bigint NOT NULL DEFAULT 0
);
CREATE INDEX channels_biz ON channels (biz);

CREATE TABLE entries (
	channel_id      bigint NOT NULL,
	seq             bigint NOT NULL,
	op              text NOT NULL, -- msg, put or delete
	key             text COLLATE "C" NOT NULL DEFAULT '',
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
-- Sweeps walk this index, never the table.
CREATE INDEX entries_gone ON entries (gone_at) WHERE gone_at IS NOT NULL;

-- The newest put or delete of each record key: IfKeySeq, compaction,
-- KeyEntry and Keys. A row whose seq is below its channel's first_seq is
-- stale (its entry was trimmed) and counts as no row. Keys list in byte
-- order, as Go compares strings, hence COLLATE "C".
CREATE TABLE keys (
	channel_id bigint NOT NULL,
	key        text COLLATE "C" NOT NULL,
	seq        bigint NOT NULL,
	put        boolean NOT NULL, -- false: a delete
	expires_at timestamptz,      -- the entry's
	PRIMARY KEY (channel_id, key)
);

CREATE TABLE idempotency_keys (
	channel_id bigint NOT NULL,
	key        text COLLATE "C" NOT NULL,
	seq        bigint NOT NULL,
	hash       bytea,
	deadline   timestamptz NOT NULL,
	PRIMARY KEY (channel_id, key)
);
CREATE INDEX idempotency_keys_deadline ON idempotency_keys (deadline);

CREATE TABLE sync_points (
	device_id  text COLLATE "C" NOT NULL,
	channel    text COLLATE "C" NOT NULL,
	epoch      text NOT NULL,
	seq        bigint NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (device_id, channel)
);

CREATE TABLE user_positions (
	user_id    text COLLATE "C" NOT NULL,
	channel    text COLLATE "C" NOT NULL,
	epoch      text NOT NULL,
	seq        bigint NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (user_id, channel)
);

CREATE TABLE cursors (
	reader     text COLLATE "C" NOT NULL,
	channel    text COLLATE "C" NOT NULL,
	epoch      text NOT NULL,
	seq        bigint NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (reader, channel)
);

CREATE TABLE devices (
	id          text COLLATE "C" PRIMARY KEY,
	user_id     text COLLATE "C" NOT NULL,
	platform    text NOT NULL DEFAULT '',
	app_version text NOT NULL DEFAULT '',
	last_seen   timestamptz NOT NULL
);
CREATE INDEX devices_user ON devices (user_id, last_seen DESC, id);

CREATE TABLE bizzes (
	name     text COLLATE "C" PRIMARY KEY,
	settings jsonb NOT NULL
);

CREATE TABLE blobs (
	key        text COLLATE "C" PRIMARY KEY,
	value      bytea NOT NULL,
	expires_at timestamptz
);
CREATE INDEX blobs_expires ON blobs (expires_at) WHERE expires_at IS NOT NULL;

-- Opaque access tokens, kept by the SHA-256 of their secret.
CREATE TABLE access_tokens (
	id         text COLLATE "C" PRIMARY KEY,
	hash       bytea NOT NULL UNIQUE,
	user_id    text COLLATE "C" NOT NULL,
	groups     text[] NOT NULL,
	label      text NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX access_tokens_user ON access_tokens (user_id, created_at DESC, id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);
