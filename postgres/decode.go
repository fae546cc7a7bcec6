package postgres

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/syncpoint/syncpoint"
)

// Read's page decoding works on the rows' raw binary values: pgx's Scan
// checks each destination's type on every row, which costs more than the
// decoding itself at the page rates a catching-up device reads at.

// pageTypes are the types of a page read's columns, in readRow's order.
var pageTypes = [...]uint32{
	pgtype.TextOID, pgtype.Int8OID, pgtype.Int8OID, // channel: epoch, first_seq, last_seq
	pgtype.Int8OID, pgtype.TextOID, pgtype.TextOID, pgtype.ByteaOID, pgtype.TimestamptzOID, // seq, op, key, data, created_at
	pgtype.TimestamptzOID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID, // expires_at, conditions, origin, idempotency_key
}

// rawOK reports whether rows come in the formats readRow decodes: binary,
// but for text, which is the same bytes in either format.
func rawOK(rows pgx.Rows) bool {
	fds := rows.FieldDescriptions()
	if len(fds) != len(pageTypes) {
		return false
	}
	for i, fd := range fds {
		if fd.DataTypeOID != pageTypes[i] || fd.Format != pgtype.BinaryFormatCode && fd.DataTypeOID != pgtype.TextOID {
			return false
		}
	}
	return true
}

var errBadValue = errors.New("malformed value from the database")

// pageRow is one decoded row of a page read.
type pageRow struct {
	epoch       string
	first, last uint64
	hasEntry    bool
	e           syncpoint.Entry
	conditions  []byte
}

// readRow decodes vals, the raw values of one row. Strings that nearly
// every entry repeats (op, origin "api", an empty key) take no allocation.
func readRow(vals [][]byte, r *pageRow, epochKnown bool) error {
	if !epochKnown {
		r.epoch = string(vals[0])
	}
	var err error
	if r.first, err = u64(vals[1]); err != nil {
		return err
	}
	if r.last, err = u64(vals[2]); err != nil {
		return err
	}
	e := &r.e
	if e.Seq, err = u64(vals[3]); err != nil {
		return err
	}
	// Seq 0, coalesced from NULL: the LEFT JOIN found no entry.
	if r.hasEntry = e.Seq != 0; !r.hasEntry {
		return nil
	}
	switch string(vals[4]) {
	case "msg":
		e.Op = syncpoint.OpMsg
	case "put":
		e.Op = syncpoint.OpPut
	case "delete":
		e.Op = syncpoint.OpDelete
	default:
		e.Op = syncpoint.Op(vals[4])
	}
	e.Key = str(vals[5])
	e.Data = nil
	if len(vals[6]) > 0 {
		e.Data = append([]byte(nil), vals[6]...)
	}
	if e.CreatedAt, err = timestamptz(vals[7]); err != nil {
		return err
	}
	e.ExpiresAt = time.Time{}
	if vals[8] != nil {
		if e.ExpiresAt, err = timestamptz(vals[8]); err != nil {
			return err
		}
	}
	r.conditions = vals[9]
	e.Conditions = syncpoint.Conditions{}
	if o := vals[10]; string(o) == syncpoint.OriginAPI {
		e.Origin = syncpoint.OriginAPI
	} else {
		e.Origin = string(o)
	}
	e.IdempotencyKey = str(vals[11])
	return nil
}

func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

func u64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, errBadValue
	}
	return binary.BigEndian.Uint64(b), nil
}

// pgEpoch is where PostgreSQL's binary timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func timestamptz(b []byte) (time.Time, error) {
	if len(b) != 8 {
		return time.Time{}, errBadValue
	}
	us := int64(binary.BigEndian.Uint64(b))
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	return time.Unix(pgEpoch.Unix()+sec, frac*1e3), nil
}
