package history

import (
	"fmt"
	"strings"
	"testing"
)

func data(s string) string { return Digest([]byte(fmt.Sprintf(`{"id":%q}`, s))) }

// run is a small clean run: a publisher sends five entries to a chat
// channel, a device applies them; two devices share a compacted notes
// channel, one uploads two versions of a record and another record.
type run struct {
	h      *History
	server []Channel
}

func cleanRun() *run {
	h := New()
	chat := Channel{Name: "chat/user:u1"}
	for i := uint64(1); i <= 5; i++ {
		d := data(fmt.Sprint("c", i))
		h.Publish(Publish{Writer: "w0", Channel: chat.Name, Digest: d, Outcome: Acked, Seq: i})
		chat.Entries = append(chat.Entries, Entry{Seq: i, Op: "msg", Digest: d})
	}
	// An unanswered publish that was not stored, and one that was refused.
	h.Publish(Publish{Writer: "w0", Channel: chat.Name, Digest: data("lost-answer"), Outcome: Unknown})
	h.Publish(Publish{Writer: "w0", Channel: chat.Name, Digest: data("refused"), Outcome: Refused})
	h.Expect("d1", chat.Name)
	for _, e := range chat.Entries {
		h.Apply("d1", chat.Name, e)
	}

	notes := Channel{Name: "notes/user:u1", Compacted: true}
	// Record a: version 1 at seq 1 is compacted away by version 2 at 3.
	h.Upload(Upload{Device: "d1", WriteID: "w1", Channel: notes.Name, Key: "a", Op: "put", Digest: data("a1"), Outcome: Acked, Seq: 1})
	h.Upload(Upload{Device: "d1", WriteID: "w2", Channel: notes.Name, Key: "b", Op: "put", Digest: data("b1"), Outcome: Acked, Seq: 2})
	h.Upload(Upload{Device: "d1", WriteID: "w2", Channel: notes.Name, Key: "b", Op: "put", Digest: data("b1"), Outcome: Acked, Seq: 2}) // a resend's answer
	h.Upload(Upload{Device: "d1", Channel: notes.Name, Key: "a", Op: "put", Digest: data("a2"), Outcome: Acked})                        // from the SDK: no seq
	notes.Entries = []Entry{{Seq: 2, Op: "put", Key: "b", Digest: data("b1")}, {Seq: 3, Op: "put", Key: "a", Digest: data("a2")}}
	for _, dev := range []string{"d1", "d2"} {
		h.Expect(dev, notes.Name)
	}
	// d1 saw every version; d2 came later and got only what is left.
	h.Apply("d1", notes.Name, Entry{Seq: 1, Op: "put", Key: "a", Digest: data("a1")})
	h.Apply("d1", notes.Name, Entry{Seq: 2, Op: "put", Key: "b", Digest: data("b1")})
	h.Apply("d1", notes.Name, Entry{Seq: 3, Op: "put", Key: "a", Digest: data("a2")})
	h.Apply("d2", notes.Name, Entry{Seq: 2, Op: "put", Key: "b", Digest: data("b1")})
	h.Apply("d2", notes.Name, Entry{Seq: 3, Op: "put", Key: "a", Digest: data("a2")})
	recs := map[string]string{"a": data("a2"), "b": data("b1")}
	h.Records("d1", notes.Name, recs)
	h.Records("d2", notes.Name, recs)
	return &run{h: h, server: []Channel{chat, notes}}
}

func (r *run) chat() *Channel  { return &r.server[0] }
func (r *run) notes() *Channel { return &r.server[1] }

func TestCleanHistoryPasses(t *testing.T) {
	r := cleanRun()
	rep := r.h.Check(r.server)
	if !rep.OK() {
		t.Fatalf("a clean history fails:\n%s", rep)
	}
	if rep.Publishes != 7 || rep.Uploads != 4 || rep.Applied != 10 || rep.Stored != 7 || rep.Devices != 2 || rep.Channels != 2 {
		t.Fatalf("counts: %s", rep.Summary())
	}
}

// Each planted fault is caught, and as what it is.
func TestPlantedFaultsAreCaught(t *testing.T) {
	cases := []struct {
		name  string
		plant func(r *run)
		want  Kind
	}{
		{"an acked publish lost by the server", func(r *run) {
			c := r.chat()
			c.Entries = append(c.Entries[:2:2], c.Entries[3:]...)
		}, Lost},
		{"an entry a device never got", func(r *run) {
			r.h.devices["d1"].channels["chat/user:u1"].segments[0] = r.h.devices["d1"].channels["chat/user:u1"].segments[0][:4]
		}, Missing},
		{"an entry applied twice", func(r *run) {
			r.h.Apply("d1", "chat/user:u1", r.chat().Entries[4])
		}, Duplicate},
		{"entries applied out of order", func(r *run) {
			seg := r.h.devices["d1"].channels["chat/user:u1"].segments[0]
			seg[1], seg[2] = seg[2], seg[1]
		}, Reorder},
		{"an upload stored twice", func(r *run) {
			c := r.notes()
			c.Entries = append(c.Entries, Entry{Seq: 4, Op: "put", Key: "b", Digest: data("b1")})
		}, DoubleUpload},
		{"two results of one write disagree", func(r *run) {
			r.h.Upload(Upload{Device: "d1", WriteID: "w2", Channel: "notes/user:u1", Key: "b", Op: "put", Digest: data("b1"), Outcome: Acked, Seq: 5})
		}, DoubleUpload},
		{"a saved upload without a seq lost", func(r *run) {
			c := r.notes()
			c.Entries = c.Entries[:1]
		}, Lost},
		{"the same publish stored twice", func(r *run) {
			c := r.chat()
			c.Entries = append(c.Entries, Entry{Seq: 6, Op: "msg", Digest: data("c5")})
			r.h.Apply("d1", c.Name, c.Entries[5])
		}, Duplicate},
		{"a publisher's seqs fall", func(r *run) {
			r.h.Publish(Publish{Writer: "w0", Channel: "chat/user:u1", Digest: data("c3"), Outcome: Acked, Seq: 3})
		}, Reorder},
		{"another entry at an acked seq", func(r *run) {
			r.chat().Entries[1].Digest = data("other")
		}, Mismatch},
		{"content nobody sent", func(r *run) {
			r.h.Apply("d1", "chat/user:u1", Entry{Seq: 9, Op: "msg", Digest: data("nobody")})
		}, Phantom},
		{"a refused publish stored", func(r *run) {
			c := r.chat()
			c.Entries = append(c.Entries, Entry{Seq: 6, Op: "msg", Digest: data("refused")})
			r.h.Apply("d1", c.Name, c.Entries[5])
		}, StoredRefused},
		{"a hole in the log", func(r *run) {
			c := r.chat()
			c.Entries[4].Seq = 7
			r.h.devices["d1"].channels[c.Name].segments[0][4].Seq = 7
			r.h.publishes[4].Seq = 7
		}, Hole},
		{"local records that differ", func(r *run) {
			r.h.Records("d2", "notes/user:u1", map[string]string{"a": data("a1"), "b": data("b1")})
		}, Records},
		{"a local record the server lacks", func(r *run) {
			r.h.Records("d2", "notes/user:u1", map[string]string{"a": data("a2"), "b": data("b1"), "c": data("c")})
		}, Records},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := cleanRun()
			tc.plant(r)
			rep := r.h.Check(r.server)
			if rep.Count(tc.want) == 0 {
				t.Fatalf("not caught as %s:\n%s", tc.want, rep)
			}
			if !strings.Contains(rep.String(), string(tc.want)) {
				t.Fatalf("the report does not name it:\n%s", rep)
			}
		})
	}
}

// What compaction, trimming, gap notices and resets take away is no loss.
func TestExcusedAbsences(t *testing.T) {
	h := New()
	feed := Channel{Name: "feed/global", Trimmed: true, FirstSeq: 4}
	for i := uint64(1); i <= 6; i++ {
		d := data(fmt.Sprint("f", i))
		h.Publish(Publish{Writer: "w", Channel: feed.Name, Digest: d, Outcome: Acked, Seq: i})
		if i >= 4 {
			feed.Entries = append(feed.Entries, Entry{Seq: i, Op: "msg", Digest: d})
		}
	}
	// d1 got 1 and 2, then was told of a gap up to 4; d2 had a reset and
	// got everything again.
	h.Expect("d1", feed.Name)
	h.Expect("d2", feed.Name)
	h.Apply("d1", feed.Name, Entry{Seq: 1, Op: "msg", Digest: data("f1")})
	h.Apply("d1", feed.Name, Entry{Seq: 2, Op: "msg", Digest: data("f2")})
	h.Gap("d1", feed.Name, 4)
	for _, e := range feed.Entries {
		h.Apply("d1", feed.Name, e)
	}
	h.Apply("d2", feed.Name, Entry{Seq: 4, Op: "msg", Digest: data("f4")})
	h.Reset("d2", feed.Name)
	for _, e := range feed.Entries {
		h.Apply("d2", feed.Name, e)
	}
	if rep := h.Check([]Channel{feed}); !rep.OK() {
		t.Fatalf("excused absences reported:\n%s", rep)
	}
	// Without the trim the same history loses 1 to 3, two of which d1 had.
	feed.Trimmed = false
	if rep := h.Check([]Channel{feed}); rep.Count(Lost) != 5 || rep.Count(Hole) != 1 {
		t.Fatalf("want 5 lost and a hole without the trim:\n%s", rep)
	}
}

func TestDigestIgnoresWhiteSpace(t *testing.T) {
	if Digest([]byte(`{"a": 1, "b" : [1, 2]}`)) != Digest([]byte(`{"a":1,"b":[1,2]}`)) {
		t.Fatal("white space changes the digest")
	}
	if Digest([]byte(`{"a":1}`)) == Digest([]byte(`{"a":2}`)) {
		t.Fatal("different data, one digest")
	}
	if Digest(nil) != "" || Digest([]byte("  ")) != "" {
		t.Fatal("empty data has a digest")
	}
}

// A run of one problem at consecutive seqs is one line of the report.
func TestReportJoinsRuns(t *testing.T) {
	r := cleanRun()
	seg := r.h.devices["d1"].channels["chat/user:u1"].segments
	seg[0] = seg[0][:1]
	rep := r.h.Check(r.server)
	if rep.Count(Missing) != 4 || !strings.Contains(rep.String(), "seqs 2 to 5 (4)") {
		t.Fatalf("want seqs 2 to 5 missing on one line:\n%s", rep)
	}
}
