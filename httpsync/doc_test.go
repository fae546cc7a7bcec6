package httpsync_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/server"
)

// exchange is one worked example of docs/http-sync.md: a request and the
// answer the document says it gets.
type exchange struct {
	line     int
	request  string
	response string
}

// docExchanges reads the ```http blocks of the document, in order, as
// request and answer pairs.
func docExchanges(t *testing.T) []exchange {
	t.Helper()
	raw, err := os.ReadFile("../docs/http-sync.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []exchange
	var cur *strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && line == "```http":
			cur, start = &strings.Builder{}, n
		case cur != nil && line == "```":
			blocks = append(blocks, exchange{line: start, request: cur.String()})
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	var out []exchange
	for i := 0; i < len(blocks); i++ {
		if strings.HasPrefix(blocks[i].request, "HTTP/") || i+1 == len(blocks) || !strings.HasPrefix(blocks[i+1].request, "HTTP/") {
			t.Fatalf("docs/http-sync.md line %d: an http block that is not a request followed by its answer", blocks[i].line)
		}
		out = append(out, exchange{line: blocks[i].line, request: blocks[i].request, response: blocks[i+1].request})
		i++
	}
	return out
}

// splitMessage splits an HTTP message of the document into its first line,
// headers and body.
func splitMessage(s string) (first string, header http.Header, body string) {
	head, body, _ := strings.Cut(s, "\n\n")
	lines := strings.Split(strings.TrimRight(head, "\n"), "\n")
	header = http.Header{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return lines[0], header, strings.TrimSpace(body)
}

var placeholder = regexp.MustCompile(`<([a-z0-9_]+)(?::([a-z0-9]+))?>`)

// TestDocExamples runs every worked example of docs/http-sync.md against a
// real server, in order, and holds each answer to the document: its
// status, the headers it shows, and its body, member for member.
func TestDocExamples(t *testing.T) {
	e := mustStart(t, func(c *server.Config) {
		chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
		notes := syncpoint.NewBiz("notes", syncpoint.TargetUser)
		notes.Writable, notes.Compact = true, true
		c.Bizzes = []syncpoint.Biz{chat, notes}
	})
	vars := map[string]string{}
	exchanges := docExchanges(t)
	if len(exchanges) < 20 {
		t.Fatalf("the document has %d worked examples", len(exchanges))
	}
	for _, ex := range exchanges {
		req := placeholder.ReplaceAllStringFunc(ex.request, func(m string) string {
			p := placeholder.FindStringSubmatch(m)
			switch {
			case p[1] == "token":
				return e.token(p[2])
			case p[1] == "api_key":
				return testAPIKey
			}
			v, ok := vars[p[1]]
			if !ok {
				t.Fatalf("line %d: %s is used before an answer names it", ex.line, m)
			}
			return v
		})
		first, header, body := splitMessage(req)
		method, rest, _ := strings.Cut(first, " ")
		path, _, _ := strings.Cut(rest, " ")
		r, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatalf("line %d: %v", ex.line, err)
		}
		r.Header = header
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatalf("line %d: %v", ex.line, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()

		wantFirst, wantHeader, wantBody := splitMessage(ex.response)
		status, _ := strconv.Atoi(strings.Fields(wantFirst)[1])
		where := fmt.Sprintf("docs/http-sync.md line %d (%s %s)", ex.line, method, path)
		if resp.StatusCode != status {
			t.Fatalf("%s: status %d %s; the document says %d", where, resp.StatusCode, got, status)
		}
		if wantFirst != fmt.Sprintf("HTTP/1.1 %d %s", status, http.StatusText(status)) {
			t.Errorf("%s: status line %q", where, wantFirst)
		}
		for k := range wantHeader {
			if g := resp.Header.Get(k); g != wantHeader.Get(k) {
				t.Errorf("%s: %s is %q; the document says %q", where, k, g, wantHeader.Get(k))
			}
		}
		if wantBody == "" {
			if len(got) != 0 {
				t.Errorf("%s: a body %s where the document shows none", where, got)
			}
			continue
		}
		var want, have any
		if err := json.Unmarshal([]byte(wantBody), &want); err != nil {
			t.Fatalf("%s: the document's body is not JSON: %v", where, err)
		}
		if err := json.Unmarshal(got, &have); err != nil {
			t.Fatalf("%s: the answer is not JSON: %s", where, got)
		}
		if err := matchDoc(want, have, vars, ""); err != nil {
			t.Fatalf("%s: %v\nanswer: %s", where, err, got)
		}
	}
}

// matchDoc compares an answer with the document's: "<any>" matches any
// value, "<name>" names a string the first time and must be that string
// after; everything else must be equal, with the same members.
func matchDoc(want, have any, vars map[string]string, at string) error {
	switch w := want.(type) {
	case string:
		if p := placeholder.FindStringSubmatch(w); p != nil && p[0] == w {
			if p[1] == "any" {
				return nil
			}
			h, ok := have.(string)
			if !ok {
				return fmt.Errorf("%s: %v, want a string for %s", at, have, w)
			}
			if v, named := vars[p[1]]; named && v != h {
				return fmt.Errorf("%s: %q, but %s was %q", at, h, w, v)
			}
			vars[p[1]] = h
			return nil
		}
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %v, want an object", at, have)
		}
		var wk, hk []string
		for k := range w {
			wk = append(wk, k)
		}
		for k := range h {
			hk = append(hk, k)
		}
		slices.Sort(wk)
		slices.Sort(hk)
		if !slices.Equal(wk, hk) {
			return fmt.Errorf("%s: members %v, the document has %v", at, hk, wk)
		}
		for _, k := range wk {
			if err := matchDoc(w[k], h[k], vars, at+"."+k); err != nil {
				return err
			}
		}
		return nil
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return fmt.Errorf("%s: %v, want %d elements", at, have, len(w))
		}
		for i := range w {
			if err := matchDoc(w[i], h[i], vars, at+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		return nil
	}
	if !reflect.DeepEqual(want, have) {
		return fmt.Errorf("%s: %v, the document says %v", at, have, want)
	}
	return nil
}
