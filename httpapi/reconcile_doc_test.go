package httpapi

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// docEpoch is the epoch docs/http-sync-reconcile.md shows; the test puts
// the server's in its place.
const docEpoch = "3f9a1c0e7b2d4a68"

// TestReconcileDocExample runs the worked example of
// docs/http-sync-reconcile.md: each request, against a server holding the
// channel the example describes, gets the answer the document shows.
func TestReconcileDocExample(t *testing.T) {
	raw, err := os.ReadFile("../docs/http-sync-reconcile.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)<!-- example: ([a-z0-9 ]+) -->\n```json\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		blocks[m[1]] = m[2]
	}
	if len(blocks) != 4 {
		t.Fatalf("found %d example blocks, want 4: %v", len(blocks), blocks)
	}
	rs := mustStartReconcile(t)
	rs.append(t, notesU1, `a={"text":"buy milk"}`, `b={"text":"call Ada"}`, `c={"text":"book flight"}`,
		`b={"text":"call Ada at 5"}`, `c`, `d={"text":"water plants"}`)
	info, err := rs.store.Channel(context.Background(), notesU1)
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"page 1", "page 2"} {
		req := strings.ReplaceAll(blocks[page+" request"], docEpoch, info.Epoch)
		r := rs.reconcile(t, rs.token, "d1", req)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", page, r.status, r.body)
		}
		var got, want any
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(strings.ReplaceAll(blocks[page+" answer"], docEpoch, info.Epoch)), &want); err != nil {
			t.Fatalf("%s answer in the document: %v", page, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: the server answers\n%s\nthe document shows\n%s", page, r.body, blocks[page+" answer"])
		}
	}
}
