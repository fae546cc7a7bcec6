package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

// TestReadTextProtocol reads pages over connections that use the simple
// protocol, whose rows come as text: the page is the same as in binary.
func TestReadTextProtocol(t *testing.T) {
	url := MustCreateSchema(t)
	bin := MustOpenStoreURL(t, url, Options{MaxConns: 2})
	text := MustOpenStoreURL(t, withParam(t, url, "default_query_exec_mode", "simple_protocol"), Options{MaxConns: 2})
	created := time.Date(1999, 12, 31, 23, 59, 59, 500000000, time.UTC) // before PostgreSQL's epoch
	r := msgReq(chatU1, `{"a":1}`)
	r.Entry.Op, r.Entry.Key, r.Entry.CreatedAt, r.Entry.ExpiresAt = syncpoint.OpPut, "k", created, time.Now().Add(time.Hour).Truncate(time.Microsecond)
	r.Entry.Conditions = syncpoint.Conditions{Platforms: []string{"ios"}, MinAppVersion: "1.0.0"}
	r.Entry.IdempotencyKey = "i"
	mustAppend(t, bin, r, msgReq(chatU1, `2`))
	ctx := context.Background()
	a, err := bin.Read(ctx, chatU1, 0, 10, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := text.Read(ctx, chatU1, 0, 10, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a.Info != b.Info || len(a.Entries) != 2 || len(b.Entries) != 2 {
		t.Fatalf("binary %+v, text %+v", a, b)
	}
	for i := range a.Entries {
		x, y := a.Entries[i], b.Entries[i]
		if x.Seq != y.Seq || x.Op != y.Op || x.Key != y.Key || string(x.Data) != string(y.Data) || !x.CreatedAt.Equal(y.CreatedAt) ||
			!x.ExpiresAt.Equal(y.ExpiresAt) || x.Origin != y.Origin || x.IdempotencyKey != y.IdempotencyKey ||
			x.Conditions.MinAppVersion != y.Conditions.MinAppVersion || len(x.Conditions.Platforms) != len(y.Conditions.Platforms) {
			t.Fatalf("entry %d: binary %+v, text %+v", i, x, y)
		}
	}
	if !a.Entries[0].CreatedAt.Equal(created) {
		t.Fatalf("created_at %v, want %v", a.Entries[0].CreatedAt, created)
	}
}
