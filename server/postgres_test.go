package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// postgresStoreURL returns a store URL for a schema of the test's own in
// SYNCPOINT_TEST_POSTGRES's database, dropped when the test ends; without
// that variable the test is skipped.
func postgresStoreURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("SYNCPOINT_TEST_POSTGRES")
	if base == "" {
		tb.Skip("SYNCPOINT_TEST_POSTGRES is not set: set it to a PostgreSQL URL (postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the server on the PostgreSQL store")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "sp_test_" + hex.EncodeToString(b[:])
	exec := func(sql string) error {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("pool_max_conns", "4") // engineers' tests share one server
	u.RawQuery = q.Encode()
	return u.String()
}

// TestPostgresStore serves from the PostgreSQL store: publishes are read
// back, the node is ready and counts its appends, and a second node on
// the same database, running beside the first, continues the same
// channels without a gap.
func TestPostgresStore(t *testing.T) {
	storeURL := postgresStoreURL(t)
	cfg := testConfig(t)
	cfg.StoreURL = storeURL
	a := MustRunServer(t, cfg)
	first := publishText(t, a.URL, "u1", "one")
	publishText(t, a.URL, "u1", "two")
	var p channelPage
	if code := do(t, "GET", a.URL+"/v1/channels/chat/user:u1", nil, &p); code != http.StatusOK || p.LastSeq != 2 || len(p.Entries) != 2 || string(p.Entries[1].Data) != `{"text":"two"}` {
		t.Fatalf("read: HTTP %d %+v", code, p)
	}
	if resp, err := http.Get(a.URL + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if body := get(t, a.URL+"/metrics"); !strings.Contains(body, "syncpoint_store_appends_total 2") {
		t.Errorf("/metrics does not count the two appends")
	}

	cfg2 := testConfig(t) // a data dir of its own: only the database is shared
	cfg2.StoreURL = storeURL
	b := MustRunServer(t, cfg2)
	for i := 3; i <= 6; i++ {
		node := a
		if i%2 == 0 {
			node = b
		}
		if got := publishText(t, node.URL, "u1", fmt.Sprint(i)); got.Entries[0].Seq != uint64(i) || got.Entries[0].Epoch != first.Entries[0].Epoch {
			t.Fatalf("publish %d through node %s: %+v, want seq %d in epoch %s", i, node.URL, got, i, first.Entries[0].Epoch)
		}
	}
	do(t, "GET", b.URL+"/v1/channels/chat/user:u1", nil, &p)
	if p.LastSeq != 6 || len(p.Entries) != 6 || p.Epoch != first.Entries[0].Epoch {
		t.Fatalf("the second node reads %+v, want six entries in the first node's epoch", p)
	}
	for _, r := range []*runningServer{a, b} {
		if err := r.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
}
