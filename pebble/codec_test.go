package pebble

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

func TestEntryCodecRoundTrip(t *testing.T) {
	for _, e := range []syncpoint.Entry{
		{Op: syncpoint.OpMsg},
		{
			Op: syncpoint.OpPut, Key: "k", Data: []byte(`{"a":1}`),
			CreatedAt: time.Unix(1700000000, 5).UTC(), ExpiresAt: time.Unix(-5, 999999999).UTC(),
			Conditions: syncpoint.Conditions{Platforms: []string{"ios", ""}, MinAppVersion: "1.0.0", MaxAppVersion: "2"},
			Origin:     "device:d1", IdempotencyKey: "i",
		},
	} {
		var got syncpoint.Entry
		if err := decodeEntry(encodeEntry(nil, &e), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
		}
	}
}

// FuzzDecodeEntry feeds arbitrary bytes to the entry decoder, which reads
// whatever is on disk: it must fail cleanly, and what it accepts must
// survive another round trip unchanged.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(nil, &syncpoint.Entry{Op: syncpoint.OpMsg}))
	f.Add(encodeEntry(nil, &syncpoint.Entry{
		Op: syncpoint.OpDelete, Key: "k", Data: []byte(`null`), CreatedAt: time.Unix(1, 2), ExpiresAt: time.Unix(3, 4),
		Conditions: syncpoint.Conditions{Platforms: []string{"web"}, MinAppVersion: "1"}, Origin: "api", IdempotencyKey: "x",
	}))
	f.Add([]byte{entryVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{entryVersion, 0, 0, 0, 0, 0, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e syncpoint.Entry
		if err := decodeEntry(b, &e); err != nil {
			return
		}
		var again syncpoint.Entry
		if err := decodeEntry(encodeEntry(nil, &e), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip changed the entry:\n%+v\n%+v", e, again)
		}
	})
}

// FuzzDecodeRecords covers the smaller decoders of stored rows.
func FuzzDecodeRecords(f *testing.F) {
	f.Add(encodeMeta(meta{Epoch: "e", FirstSeq: 1, LastSeq: 0}))
	f.Add(encodeIdem(7, time.Unix(10, 0), nil))
	f.Add(encodeIdem(7, time.Unix(10, 0), []byte("0123456789abcdef0123456789abcdef")))
	f.Add(encodePosition(syncpoint.Position{Epoch: "e", Seq: 3}, time.Unix(5, 6)))
	f.Add(encodeBlob([]byte("v"), time.Time{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMeta(b); err == nil {
			if m2, err := decodeMeta(encodeMeta(m)); err != nil || m2 != m {
				t.Fatalf("meta round trip: %+v %+v %v", m, m2, err)
			}
		}
		if seq, at, hash, err := decodeIdem(b); err == nil {
			if seq2, at2, hash2, err := decodeIdem(encodeIdem(seq, at, hash)); err != nil || seq2 != seq || !at2.Equal(at) || !bytes.Equal(hash2, hash) {
				t.Fatalf("idem round trip: %v", err)
			}
		}
		if p, at, err := decodePosition(b); err == nil {
			if p2, at2, err := decodePosition(encodePosition(p, at)); err != nil || p2 != p || !at2.Equal(at) {
				t.Fatalf("position round trip: %v", err)
			}
		}
		if v, at, err := decodeBlob(b); err == nil {
			if v2, at2, err := decodeBlob(encodeBlob(v, at)); err != nil || !bytes.Equal(v2, v) || !at2.Equal(at) {
				t.Fatalf("blob round trip: %v", err)
			}
		}
	})
}

func TestKeyTimesSort(t *testing.T) {
	times := []time.Time{time.Unix(-100, 5), time.Unix(-1, 999999999), time.Unix(0, 0), time.Unix(0, 1), time.Unix(1<<40, 0)}
	for i := 1; i < len(times); i++ {
		a, b := appendTime(nil, times[i-1]), appendTime(nil, times[i])
		if bytes.Compare(a, b) >= 0 {
			t.Fatalf("%v does not sort before %v", times[i-1], times[i])
		}
		if !readTime(b).Equal(times[i]) {
			t.Fatalf("readTime(%v) = %v", times[i], readTime(b))
		}
	}
}

// Entries decoded into one arena keep their own data: each is a copy,
// capped so that growing one cannot write over the next, and big data or
// data past a chunk's end still comes out whole.
func TestArenaCopies(t *testing.T) {
	var a arena
	var want, got [][]byte
	for i := range 300 {
		d := bytes.Repeat([]byte{byte(i)}, 1+i*7%1500) // some over arenaMax
		var e syncpoint.Entry
		src := encodeEntry(nil, &syncpoint.Entry{Op: syncpoint.OpMsg, Data: d})
		if err := decodeEntryIn(src, &e, &a); err != nil {
			t.Fatal(err)
		}
		clear(src) // the copy must not alias what the store handed over
		want, got = append(want, d), append(got, e.Data)
	}
	for i := range got {
		if i%2 == 0 {
			got[i] = append(got[i], 0xEE) // must not touch got[i+1]
		}
	}
	for i := range want {
		if !bytes.Equal(got[i][:len(want[i])], want[i]) {
			t.Fatalf("entry %d's data changed", i)
		}
	}
}
