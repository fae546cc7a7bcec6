package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint/internal/pgtest"
)

// postgresStoreURL is a store URL for a schema of the test's own.
func postgresStoreURL(tb testing.TB) string { return pgtest.Schema(tb, 4) }

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
