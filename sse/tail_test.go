package sse

import (
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint"
)

// FuzzTailID reads tail event ids from outside: every input is refused
// cleanly or read back to the id it came from.
func FuzzTailID(f *testing.F) {
	for _, s := range []string{"4e5c61ae98464883:42", "e:0", ":1", "e:", "e:-1", "e:1:2", "e :1", strings.Repeat("a", 300) + ":18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		p, err := parseTailID(id)
		if err != nil {
			if syncpoint.Code(err) != syncpoint.CodeInvalid {
				t.Fatalf("parseTailID(%q) = %v, want an invalid error", id, err)
			}
			return
		}
		line := string(appendTailID(nil, p))
		back, err := parseTailID(strings.TrimSuffix(strings.TrimPrefix(line, "id: "), "\n"))
		if err != nil || back != p {
			t.Fatalf("%q read as %+v, written as %q, read back as %+v, %v", id, p, line, back, err)
		}
	})
}
