package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

func TestParseConfigBizzes(t *testing.T) {
	src := `
listen: 127.0.0.1:9000
rate_limit: 50
sweep_interval: 30s
bizzes:
  - name: chat
    target: user
  - name: config
    target: global
    compact: true
    retention: 48h
  - name: presence
    target: user
    persistent: false
    multi_device: false
`
	c, err := ParseConfig("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if len(c.Bizzes) != 3 {
		t.Fatalf("bizzes = %d; want 3", len(c.Bizzes))
	}
	chat := c.Bizzes[0]
	if want := syncpoint.NewBiz("chat", syncpoint.TargetUser); chat != want {
		t.Errorf("chat = %+v; want the defaults %+v", chat, want)
	}
	cfg := c.Bizzes[1]
	if !cfg.Compact || time.Duration(cfg.Retention) != 48*time.Hour || !cfg.Persistent {
		t.Errorf("config = %+v", cfg)
	}
	p := c.Bizzes[2]
	if p.Persistent || p.MultiDevice || p.MaxEntryBytes != syncpoint.DefaultMaxEntryBytes {
		t.Errorf("presence = %+v", p)
	}
	if *c.file.Listen != "127.0.0.1:9000" || *c.file.RateLimit != 50 || time.Duration(*c.file.SweepInterval) != 30*time.Second {
		t.Errorf("settings = %+v", c.file)
	}
	if c.file.TCPListen != nil {
		t.Errorf("tcp_listen is set; want absent")
	}
}

// TestParseConfigMerge checks that YAML's merge keys and aliases work in a
// biz, and that their keys are checked like the biz's own.
func TestParseConfigMerge(t *testing.T) {
	src := "defaults: &d {compact: true}\n"
	if _, err := ParseConfig("m.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), `unknown key "defaults"`) {
		t.Fatalf("an unknown top-level key holding an anchor: %v", err)
	}
	src = "bizzes:\n  - &a {name: a, target: user, compact: true}\n  - <<: *a\n    name: b\n"
	c, err := ParseConfig("m.yaml", []byte(src))
	if err != nil || len(c.Bizzes) != 2 || !c.Bizzes[1].Compact || c.Bizzes[1].Name != "b" {
		t.Fatalf("ParseConfig = %+v, %v", c, err)
	}
}

func TestParseConfigEmpty(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "bizzes: []\n"} {
		c, err := ParseConfig("empty.yaml", []byte(src))
		if err != nil || len(c.Bizzes) != 0 {
			t.Errorf("ParseConfig(%q) = %+v, %v", src, c, err)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		src, want string
	}{
		{"listn: x\n", `test.yaml:1: unknown key "listn" at the top level; the top level takes allowed_origins, bizzes, `},
		{"colour: red\nbizzes:\n  - name: chat\n    target: user\n    colour: red\n", `test.yaml:1: unknown key "colour" at the top level`},
		{"bizzes:\n  - name: chat\n    target: user\n    colour: red\n", `test.yaml:4: unknown key "colour" in bizzes[0]; a biz takes compact, conflict,`},
		{"bizzes:\n  - name: chat\n    target: user\n    retension: 1h\n", `test.yaml:4: unknown key "retension" in bizzes[0]`},
		{"bizzes:\n  - name: chat\n    target: user\n  - name: chat\n    target: global\n", "bizzes[1]: biz \"chat\" is already defined at line 2"},
		{"bizzes:\n  - name: Chat\n    target: user\n", "biz name \"Chat\""},
		{"bizzes:\n  - name: n\n    target: user\n    writable: true\n    webhook:\n      validate_ur: http://x\n", `test.yaml:6: unknown key "validate_ur" in bizzes[0].webhook; a webhook takes notify_url, secret, timeout, validate_url`},
		{"bizzes:\n  - name: n\n    target: user\n    webhook:\n      validate_url: http://x\n", "webhook applies only to writable"},
		{"bizzes:\n  - name: n\n    target: user\n    writable: true\n    webhook: yes\n", `test.yaml:5: bizzes[0]: want a mapping, not the string "yes"`},
		{"bizzes:\n  - name: chat\n    target: team\n", "target \"team\""},
		{"bizzes:\n  - name: chat\n    target: user\n    retention: 3600\n", "duration \"3600\""},
		{"bizzes:\n  - name: chat\n    target: user\n    persistent: maybe\n", `test.yaml:4: bizzes[0]: want true or false, not the string "maybe"`},
		{"bizzes:\n  - name: cfg\n    target: global\n    multi_device: false\n", "multi_device"},
		{"bizzes:\n  - name: n\n    target: user\n    writable: true\n    persistent: false\n", "writable"},
		{"bizzes:\n  - chat\n", "want a mapping"},
		{"x: &w {validate_ur: http://x}\n", `test.yaml:1: unknown key "x" at the top level`},
		{"bizzes:\n  - &b {name: n, target: user, writable: true, webhook: &w {validate_ur: http://x}}\n  - {name: m, target: user, writable: true, webhook: *w}\n", `test.yaml:2: unknown key "validate_ur" in bizzes[0].webhook`},
		{"bizzes: chat\n", `test.yaml:1: want a list, not the string "chat"`},
		{"bizzes:\n  - name: c\n    target: user\n    <<: {compact: true, colour: red}\n", `test.yaml:4: unknown key "colour" in bizzes[0]`},
		{"- a\n", "test.yaml:1: want a mapping of settings and bizzes"},
		{"send_queue: many\n", `test.yaml:1: want a whole number, not the string "many"`},
		{"\n\nrate_limit: -1\n", "test.yaml:3: rate_limit must be a finite number, not negative"},
		{"rate_limit: -1\n", "rate_limit"},
		{"sweep_interval: 0s\n", "sweep_interval"},
		{"log_level: loud\n", `test.yaml:1: log_level "loud": want debug`},
		{"allowed_origins: localhost\n", `test.yaml:1: want a list, not the string "localhost"`},
		{"listen: x\nallowed_origins: [app.example.com, \"https://app.example.com/x\"]\n", `test.yaml:2: allowed_origins "https://app.example.com/x": an origin is a scheme and a host, with no path`},
		{"a: [\n", "test.yaml"},
		{"listen: x\n---\nlisten: y\n", "one YAML document"},
		{"listen: x\nlisten: y\n", "already defined"},
	} {
		_, err := ParseConfig("test.yaml", []byte(tc.src))
		if err == nil {
			t.Errorf("ParseConfig(%q) succeeded; want an error mentioning %q", tc.src, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "test.yaml") || strings.Contains(err.Error(), "main.") || strings.Contains(err.Error(), "yaml.Node") {
			t.Errorf("ParseConfig(%q) = %v; want test.yaml: ...%s...", tc.src, err, tc.want)
		}
	}
}

// TestExampleConfig keeps the repository's syncpoint.yaml parseable.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../../syncpoint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig("syncpoint.yaml", data)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	byName := map[string]syncpoint.Biz{}
	for _, b := range c.Bizzes {
		byName[b.Name] = b
	}
	for _, name := range []string{"chat", "config", "payments", "presence", "notes", "team"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("example config lacks biz %q", name)
		}
	}
	if b := byName["notes"]; !b.Writable || b.Conflict != syncpoint.ConflictReject {
		t.Errorf("notes = %+v; want writable with conflict reject", b)
	}
	if b := byName["presence"]; b.Persistent {
		t.Errorf("presence = %+v; want ephemeral", b)
	}
}

func FuzzParseConfig(f *testing.F) {
	if data, err := os.ReadFile("../../syncpoint.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("bizzes:\n  - name: chat\n    target: user\n"))
	f.Add([]byte("listen: 127.0.0.1:0\nrate_limit: 1.5\nshutdown_timeout: 1s\n"))
	f.Add([]byte("bizzes:\n  - {name: a, target: group, max_backlog: 10, conflict: merge, writable: true}\n"))
	f.Add([]byte("bizzes: [&a {name: x, target: user}, *a]\n"))
	f.Add([]byte("bizzes:\n  - name: c\n    target: user\n    retention: 1h\n    <<: {compact: true}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, b := range c.Bizzes {
			if err := b.Validate(); err != nil {
				t.Fatalf("accepted an invalid biz %+v: %v", b, err)
			}
			if seen[b.Name] {
				t.Fatalf("accepted biz %q twice", b.Name)
			}
			seen[b.Name] = true
		}
	})
}

// TestAllowedOriginsSetting: allowed_origins comes from the file unless
// --allowed-origins is given; an empty list stays a list (same origin
// only), apart from no setting at all.
func TestAllowedOriginsSetting(t *testing.T) {
	for _, tc := range []struct {
		file string
		args []string
		want []string
	}{
		{"", nil, nil},
		{"allowed_origins: [app.example.com, \"https://*.example.com\"]\n", nil, []string{"app.example.com", "https://*.example.com"}},
		{"allowed_origins: []\n", nil, []string{}},
		{"allowed_origins: [app.example.com]\n", []string{"--allowed-origins", ""}, []string{}},
		{"allowed_origins: [app.example.com]\n", []string{"--allowed-origins", "b.example.com,c.example.com"}, []string{"b.example.com", "c.example.com"}},
		{"allowed_origins: [app.example.com]\n", []string{"--allowed-origins", "b.example.com", "--allowed-origins", "*"}, []string{"b.example.com", "*"}},
	} {
		c, err := ParseConfig("t.yaml", []byte(tc.file))
		if err != nil {
			t.Fatal(err)
		}
		cmd := newServeCmd(env{})
		if err := cmd.Flags().Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		var f serveFlags
		f.allowedOrigins, _ = cmd.Flags().GetStringSlice("allowed-origins")
		if !cmd.Flags().Changed("allowed-origins") {
			f.allowedOrigins = nil
		}
		f.apply(cmd, c)
		if !reflect.DeepEqual(f.allowedOrigins, tc.want) {
			t.Errorf("file %q, args %q: allowed origins %#v, want %#v", tc.file, tc.args, f.allowedOrigins, tc.want)
		}
	}
}
