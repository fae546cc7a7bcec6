package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncpoint/syncpoint"
)

// Directory is the cluster's syncpoint.Directory, kept in the tables
// presence and presence_nodes of the database the nodes share. Get it
// with Store.Directory.
//
// Beats are stamped with the store's clock and judged by the reader's, so
// the nodes' clocks must agree to well within Options.PresenceGrace, as
// NTP keeps them.
type Directory struct{ s *Store }

var _ syncpoint.Directory = (*Directory)(nil)

// Directory returns the presence directory on the store's database. The
// Store does not implement syncpoint.Directory itself because the Store
// interface already has a Device method of another meaning.
func (s *Store) Directory() *Directory { return &Directory{s: s} }

// deadNodeFactor says how long past its grace a silent node's rows are
// kept before a beat deletes them: long enough that a node back from a
// store outage still finds them, and its next beat replaces them anyway.
const deadNodeFactor = 10

// Join implements syncpoint.Directory. A node Join sees for the first
// time counts as beating from now on; a node whose beats lapsed stays
// unlisted, this session included, until its next Beat, which lists what
// it really holds, rather than bringing back its rows of before.
// ConnectedAt is kept to the microsecond.
func (d *Directory) Join(ctx context.Context, p syncpoint.Presence) error {
	row, err := presenceRow(p.Node, p)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	return d.s.exec(ctx, "join "+p.Session, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO presence_nodes (node, last_beat) VALUES ($1, $2) ON CONFLICT (node) DO NOTHING`, p.Node, d.s.clock.Now())
		b.Queue(`INSERT INTO presence (session, node, device_id, user_id, transport, connected_at, singles)
			VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)
			ON CONFLICT (session) DO UPDATE SET `+presenceUpdate,
			row.session, row.node, row.device, row.user, row.transport, row.connected, row.singles)
	})
}

// presenceUpdate is the SET of an upsert of a session. Its WHERE leaves an
// unchanged row unwritten, so that beats repeating what is stored make no
// dead rows.
const presenceUpdate = `node = excluded.node, device_id = excluded.device_id, user_id = excluded.user_id,
	transport = excluded.transport, connected_at = excluded.connected_at, singles = excluded.singles
	WHERE (presence.node, presence.device_id, presence.user_id, presence.transport, presence.connected_at, presence.singles)
		IS DISTINCT FROM (excluded.node, excluded.device_id, excluded.user_id, excluded.transport, excluded.connected_at, excluded.singles)`

// Leave implements syncpoint.Directory. Leaving a session that is not
// listed is not an error.
func (d *Directory) Leave(ctx context.Context, session string) error {
	if !textOK(session) {
		return nil // no such session can have been listed
	}
	return d.s.exec(ctx, "leave "+session, func(b *pgx.Batch) {
		b.Queue(`DELETE FROM presence WHERE session = $1`, session)
	})
}

// Device implements syncpoint.Directory: the device's sessions on nodes
// that beat within the grace period, by ConnectedAt, then join order.
func (d *Directory) Device(ctx context.Context, deviceID string) ([]syncpoint.Presence, error) {
	return d.list(ctx, "device presence "+deviceID, "device_id", deviceID)
}

// User implements syncpoint.Directory, in Device's order.
func (d *Directory) User(ctx context.Context, userID string) ([]syncpoint.Presence, error) {
	return d.list(ctx, "user presence "+userID, "user_id", userID)
}

// list reads the live sessions whose col (a constant, never input) is id.
func (d *Directory) list(ctx context.Context, what, col, id string) ([]syncpoint.Presence, error) {
	if !textOK(id) {
		return nil, nil // no such id can have been listed
	}
	var out []syncpoint.Presence
	err := d.s.read(ctx, what, func(ctx context.Context) error {
		out = out[:0]
		alive := d.s.clock.Now().Add(-d.s.opts.PresenceGrace)
		rows, err := d.s.pool.Query(ctx, `SELECT p.session, p.node, p.device_id, p.user_id, p.transport, p.connected_at, p.singles::text
			FROM presence p JOIN presence_nodes n ON n.node = p.node
			WHERE p.`+col+` = $1 AND n.last_beat > $2
			ORDER BY p.connected_at, p.joined`, id, alive)
		if err != nil {
			return err
		}
		var p syncpoint.Presence
		var singles string
		_, err = pgx.ForEachRow(rows, []any{&p.Session, &p.Node, &p.DeviceID, &p.UserID, &p.Transport, &p.ConnectedAt, &singles}, func() error {
			p.Singles = nil
			if singles != "[]" {
				if err := json.Unmarshal([]byte(singles), &p.Singles); err != nil {
					return fmt.Errorf("session %s: singles: %w", p.Session, err)
				}
			}
			out = append(out, p)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Beat implements syncpoint.Directory. In one transaction it stamps the
// node's beat, deletes its sessions that are not among the given ones and
// upserts those that are (their Node is taken to be node; of two with one
// session id the last counts). It also deletes the nodes silent for
// deadNodeFactor grace periods, with their sessions, which costs a look
// at an index when there are none.
func (d *Directory) Beat(ctx context.Context, node string, sessions []syncpoint.Presence) error {
	if node == "" || !textOK(node) {
		return fmt.Errorf("beat: %w", syncpoint.Errorf(syncpoint.CodeInvalid, "node: want a non-empty UTF-8 name without NUL bytes"))
	}
	var cols struct {
		session, device, user, transport, singles []string
		connected                                 []time.Time
	}
	at := make(map[string]int, len(sessions))
	for _, p := range sessions {
		row, err := presenceRow(node, p)
		if err != nil {
			return fmt.Errorf("beat: %w", err)
		}
		if i, ok := at[row.session]; ok {
			cols.device[i], cols.user[i], cols.transport[i], cols.connected[i], cols.singles[i] = row.device, row.user, row.transport, row.connected, row.singles
			continue
		}
		at[row.session] = len(cols.session)
		cols.session = append(cols.session, row.session)
		cols.device = append(cols.device, row.device)
		cols.user = append(cols.user, row.user)
		cols.transport = append(cols.transport, row.transport)
		cols.connected = append(cols.connected, row.connected)
		cols.singles = append(cols.singles, row.singles)
	}
	now := d.s.clock.Now()
	return d.s.exec(ctx, "beat "+node, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO presence_nodes (node, last_beat) VALUES ($1, $2)
			ON CONFLICT (node) DO UPDATE SET last_beat = excluded.last_beat`, node, now)
		// An anti-join: once planned generically, "session <> ALL($2)"
		// compares every row with every element.
		b.Queue(`DELETE FROM presence p WHERE p.node = $1 AND NOT EXISTS (SELECT FROM unnest($2::text[]) AS s WHERE s = p.session)`, node, cols.session)
		if len(cols.session) > 0 {
			b.Queue(`INSERT INTO presence (session, node, device_id, user_id, transport, connected_at, singles)
				SELECT s, $1, d, u, t, c, j::jsonb
				FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[]) AS x (s, d, u, t, c, j)
				ON CONFLICT (session) DO UPDATE SET `+presenceUpdate,
				node, cols.session, cols.device, cols.user, cols.transport, cols.connected, cols.singles)
		}
		b.Queue(`WITH dead AS (DELETE FROM presence_nodes WHERE last_beat < $1 RETURNING node)
			DELETE FROM presence p USING dead WHERE p.node = dead.node`,
			now.Add(-deadNodeFactor*d.s.opts.PresenceGrace))
	})
}

// sessionRow is a Presence as the presence table holds it.
type sessionRow struct {
	session, node, device, user, transport string
	connected                              time.Time
	singles                                string // a JSON array of "biz/target"
}

// presenceRow checks p and returns its row on node.
func presenceRow(node string, p syncpoint.Presence) (sessionRow, error) {
	for _, f := range []struct{ what, v string }{
		{"session", p.Session}, {"node", node}, {"device id", p.DeviceID}, {"user id", p.UserID}, {"transport", p.Transport},
	} {
		if !textOK(f.v) || f.v == "" && f.what != "transport" {
			return sessionRow{}, syncpoint.Errorf(syncpoint.CodeInvalid, "presence %q: %s: want a non-empty UTF-8 string without NUL bytes", p.Session, f.what)
		}
	}
	for _, ch := range p.Singles {
		if err := ch.Validate(); err != nil {
			return sessionRow{}, fmt.Errorf("presence %q: single channel: %w", p.Session, err)
		}
	}
	singles := "[]"
	if len(p.Singles) > 0 {
		b, err := json.Marshal(p.Singles)
		if err != nil {
			return sessionRow{}, err
		}
		singles = string(b)
	}
	return sessionRow{session: p.Session, node: node, device: p.DeviceID, user: p.UserID, transport: p.Transport, connected: p.ConnectedAt, singles: singles}, nil
}
