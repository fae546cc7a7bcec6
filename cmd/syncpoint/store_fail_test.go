package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeUnwritableStoreFailsFast starts serve on stores that cannot be
// written even by root, who passes every permission check: a store path
// under a regular file, and a store directory where the write probe's name
// is taken by a directory. serve exits 1 at once with one line that says
// why, instead of spinning on Pebble's retries.
func TestServeUnwritableStoreFailsFast(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T, data string){
		"store path under a file": func(t *testing.T, data string) {
			if err := os.WriteFile(filepath.Join(data, "store"), []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"store directory refuses files": func(t *testing.T, data string) {
			if err := os.MkdirAll(filepath.Join(data, "store", ".syncpoint-write-probe", "x"), 0o700); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			setup(t, data)
			e := newTestEnv(map[string]string{envAPIKey: "k", envTokenSecret: "0123456789abcdef0123"})
			code := run(t.Context(), e.env, []string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--tcp-listen", "", "--config", ""})
			lines := strings.Split(strings.TrimSpace(e.err.String()), "\n")
			if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], filepath.Join(data, "store")) {
				t.Fatalf("serve: exit %d, stderr:\n%s\nwant exit 1 and one line naming the store", code, e.err)
			}
		})
	}
}
