package records

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"

	"github.com/syncpoint/syncpoint/wire"
)

// A write_id names one write, and each of its changes becomes an entry
// whose idempotency key is made of the write_id. A resend must carry the
// same content; these hashes are what it is checked against: the store
// compares a change's hash when the key is reused, and the kept result of a
// write is given back only for the same write.

// changeHash is the content of one change as the device sent it: kind,
// id, base_seq, data and fields. The entry appended for it can differ
// between tries (a merge), so the store is given this instead.
func changeHash(k kind, r *wire.Record) []byte {
	h := sha256.New()
	writeRecord(h, k, r)
	return h.Sum(nil)
}

// writeHash is the content of a whole write: every change set's biz and
// target and every change in it, in order.
func writeHash(w *wire.Write) []byte {
	h := sha256.New()
	for i := range w.Changes {
		cs := &w.Changes[i]
		writeField(h, []byte(cs.Biz))
		writeField(h, []byte(cs.Target))
		for _, group := range []struct {
			k    kind
			recs []wire.Record
		}{{kindCreate, cs.Created}, {kindUpdate, cs.Updated}, {kindDelete, cs.Deleted}} {
			writeUvarint(h, uint64(len(group.recs)))
			for j := range group.recs {
				writeRecord(h, group.k, &group.recs[j])
			}
		}
	}
	return h.Sum(nil)
}

func writeRecord(h hash.Hash, k kind, r *wire.Record) {
	writeUvarint(h, uint64(k))
	writeField(h, []byte(r.ID))
	writeUvarint(h, r.BaseSeq)
	writeField(h, r.Data)
	writeUvarint(h, uint64(len(r.Fields)))
	for _, f := range r.Fields {
		writeField(h, []byte(f))
	}
}

// writeField writes b with its length first, so fields cannot run together.
func writeField(w io.Writer, b []byte) {
	writeUvarint(w, uint64(len(b)))
	w.Write(b)
}

func writeUvarint(w io.Writer, v uint64) {
	var n [binary.MaxVarintLen64]byte
	w.Write(n[:binary.PutUvarint(n[:], v)])
}

// noticeHash stands for the content of every upload notice: a notice is
// named by its change's (target, seq), whatever its created_at, so a
// retried notice is always the same one.
var noticeHash = []byte("upload notice")

// resultVersion starts a kept write result that carries its write's hash;
// results kept before it are bare JSON, which starts with '{'.
const resultVersion = 1

func encodeResult(writeHash, frame []byte) []byte {
	b := make([]byte, 0, 1+len(writeHash)+len(frame))
	b = append(append(b, resultVersion), writeHash...)
	return append(b, frame...)
}

// decodeResult splits a kept result into its write's hash (nil for an old
// result, which is taken for the same write) and its frame.
func decodeResult(b []byte) (hash, frame []byte, ok bool) {
	switch {
	case len(b) > 0 && b[0] == '{':
		return nil, b, true
	case len(b) > sha256.Size && b[0] == resultVersion:
		return b[1 : 1+sha256.Size], b[1+sha256.Size:], true
	}
	return nil, nil, false
}

// sameWrite reports whether a kept result's hash is the write's.
func sameWrite(kept, h []byte) bool { return kept == nil || bytes.Equal(kept, h) }
