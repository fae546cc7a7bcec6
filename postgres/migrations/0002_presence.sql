-- The cluster's presence directory: which device sessions are open, on
-- which node. A node's sessions are listed only while the node beats, so
-- the sessions of a node that died without leaving drop out by themselves.

-- One row per node, refreshed by every beat. A beat also deletes nodes
-- long dead (and their sessions) through presence_nodes_beat.
CREATE TABLE presence_nodes (
	node      text COLLATE "C" PRIMARY KEY,
	last_beat timestamptz NOT NULL
);
CREATE INDEX presence_nodes_beat ON presence_nodes (last_beat);

-- One row per open session. joined orders sessions that connected in the
-- same microsecond by the order they were first listed; upserts keep it.
CREATE TABLE presence (
	session      text COLLATE "C" PRIMARY KEY,
	node         text COLLATE "C" NOT NULL,
	device_id    text COLLATE "C" NOT NULL,
	user_id      text COLLATE "C" NOT NULL,
	transport    text NOT NULL DEFAULT '',
	connected_at timestamptz NOT NULL,
	singles      jsonb NOT NULL DEFAULT '[]', -- ["biz/target", …]
	joined       bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX presence_node ON presence (node);
CREATE INDEX presence_device ON presence (device_id, connected_at, joined);
CREATE INDEX presence_user ON presence (user_id, connected_at, joined);
