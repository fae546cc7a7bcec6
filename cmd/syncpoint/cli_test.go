package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/server"
)

// testEnv is an env with captured output and the given variables only.
type testEnv struct {
	env
	out, err *bytes.Buffer
}

func newTestEnv(vars map[string]string) testEnv {
	var out, errb bytes.Buffer
	return testEnv{
		env: env{
			stdin:  strings.NewReader(""),
			stdout: &out,
			stderr: &errb,
			getenv: func(k string) string { return vars[k] },
		},
		out: &out,
		err: &errb,
	}
}

// MustRunServer starts an in-process server with the chat and config
// bizzes and returns its URL.
func MustRunServer(tb testing.TB, apiKey string) string {
	tb.Helper()
	s, err := server.New(server.Config{
		DataDir:     tb.TempDir(),
		Listen:      "127.0.0.1:0",
		APIKey:      apiKey,
		TokenSecret: "0123456789abcdef0123",
		Bizzes: []syncpoint.Biz{
			syncpoint.NewBiz("chat", syncpoint.TargetUser),
			syncpoint.NewBiz("config", syncpoint.TargetGlobal),
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return "http://" + s.Addr()
}

func TestPublishCommand(t *testing.T) {
	url := MustRunServer(t, "k1")
	e := newTestEnv(nil)
	code := run(t.Context(), e.env, []string{"publish", "--server", url, "--api-key", "k1",
		"--biz", "chat", "--user", "u1,u2", "--user", "u3", "--data", `{"text":"hi"}`,
		"--ttl", "1h", "--platforms", "ios,android", "--min-app-version", "1.2.0", "--idempotency-key", "m1"})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e.err)
	}
	var a struct {
		Entries []struct {
			Channel string `json:"channel"`
			Seq     uint64 `json:"seq"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(e.out.Bytes(), &a); err != nil || len(a.Entries) != 3 {
		t.Fatalf("output %s: %v", e.out, err)
	}
	for i, u := range []string{"u1", "u2", "u3"} {
		if a.Entries[i].Channel != "chat/user:"+u || a.Entries[i].Seq != 1 {
			t.Errorf("entry %d = %+v", i, a.Entries[i])
		}
	}

	// The same idempotency key with the same content is a duplicate of seq 1;
	// with other content it is refused.
	e = newTestEnv(nil)
	run(t.Context(), e.env, []string{"publish", "--server", url, "--api-key", "k1", "--biz", "chat", "--user", "u1", "--data", `{"text":"hi"}`,
		"--platforms", "ios,android", "--min-app-version", "1.2.0", "--idempotency-key", "m1"})
	if !strings.Contains(e.out.String(), `"duplicate":true`) {
		t.Errorf("repeat publish answered %s", e.out)
	}
	e = newTestEnv(nil)
	code = run(t.Context(), e.env, []string{"publish", "--server", url, "--api-key", "k1", "--biz", "chat", "--user", "u1", "--data", `{"text":"other"}`, "--idempotency-key", "m1"})
	if code != 1 || !strings.Contains(e.err.String(), "idempotency") {
		t.Errorf("reused key with other data: exit %d, stderr %s", code, e.err)
	}

	// Global, from stdin, and the key from the environment.
	e = newTestEnv(map[string]string{envAPIKey: "k1"})
	e.stdin = strings.NewReader(` {"theme":"dark"} `)
	code = run(t.Context(), e.env, []string{"publish", "--server", url, "--data-dir", t.TempDir(), "--biz", "config", "--global", "--op", "put", "--key", "theme", "--data", "@-"})
	if code != 0 || !strings.Contains(e.out.String(), `"config/global"`) {
		t.Fatalf("global publish: exit %d: %s %s", code, e.out, e.err)
	}
}

func TestPublishCommandErrors(t *testing.T) {
	url := MustRunServer(t, "k1")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--biz", "nope", "--user", "u1"}, 1, "unknown biz"},
		{[]string{"--biz", "chat", "--global"}, 1, "chat"},
		{[]string{"--biz", "chat", "--user", "u1", "--op", "put"}, 2, "needs a key"},
		{[]string{"--biz", "chat", "--user", "u1", "--min-app-version", "x.y"}, 2, "semantic version"},
		{[]string{"--biz", "chat", "--user", "bad user"}, 2, `user id "bad user"`},
		{[]string{"--biz", "Chat", "--user", "u1"}, 2, "biz name"},
		{[]string{"--biz", "chat", "--user", "u1", "--op", "upsert"}, 2, `op "upsert"`},
		{[]string{"--biz", "chat", "--device", "d1"}, 1, "takes user targets"},
		{[]string{"--biz", "chat"}, 2, "no target"},
		{[]string{"--user", "u1"}, 2, "--biz is required"},
		{[]string{"--biz", "chat", "--user", "u1", "--data", "hello"}, 2, "not valid JSON"},
		{[]string{"--biz", "chat", "--user", "u1", "--bogus"}, 2, "unknown flag"},
		{[]string{"--biz", "chat", "--user", "u1", "--api-key", "wrong"}, 1, "invalid API key"},
	} {
		e := newTestEnv(nil)
		args := append([]string{"publish", "--server", url, "--api-key", "k1"}, tc.args...)
		code := run(t.Context(), e.env, args)
		if code != tc.code || !strings.Contains(e.err.String(), tc.want) {
			t.Errorf("publish %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, e.err, tc.code, tc.want)
		}
	}
	// No server there at all.
	e := newTestEnv(nil)
	if code := run(t.Context(), e.env, []string{"publish", "--server", "http://127.0.0.1:1", "--api-key", "k", "--biz", "chat", "--user", "u1"}); code != 1 {
		t.Errorf("publish to a closed port: exit %d", code)
	}
}

func TestTokenCommand(t *testing.T) {
	secret := "0123456789abcdef0123456789"
	e := newTestEnv(map[string]string{envTokenSecret: secret})
	code := run(t.Context(), e.env, []string{"token", "--data", t.TempDir(), "--user", "u1", "--groups", "g1,g2", "--groups", "g3", "--ttl", "2h"})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e.err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(e.out.String()))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.User != "u1" || strings.Join(c.Groups, ",") != "g1,g2,g3" {
		t.Errorf("claims = %+v", c)
	}
	if left := time.Until(c.ExpiresAt); left < time.Hour || left > 2*time.Hour {
		t.Errorf("expires in %v; want about 2h", left)
	}

	// Each is a mistake on the command line: exit 2, as the README says.
	for _, args := range [][]string{
		{"token", "--data", t.TempDir()},                                       // no user
		{"token", "--data", t.TempDir(), "--user", "u1"},                       // no secret anywhere
		{"token", "--token-secret", secret, "--user", "bad user"},              // bad user id
		{"token", "--token-secret", secret, "--user", "u1", "--groups", "g 1"}, // bad group
		{"token", "--token-secret", secret, "--user", "u1", "--ttl", "-1h"},    // bad ttl
		{"token", "--token-secret", secret, "--user", "u1", "extra"},           // an argument
	} {
		e := newTestEnv(nil)
		if code := run(t.Context(), e.env, args); code != 2 {
			t.Errorf("%v: exit %d (%s); want 2", args, code, e.err)
		}
	}
}

func TestResolveSecrets(t *testing.T) {
	dir := t.TempDir()
	use, gen, save, err := resolveSecrets(dir, secrets{APIKey: "given"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, secretsFile)); !os.IsNotExist(err) {
		t.Fatalf("resolveSecrets wrote secrets.json before save (%v)", err)
	}
	if err := save(); err != nil {
		t.Fatal(err)
	}
	if use.APIKey != "given" || gen.APIKey != "" || gen.TokenSecret == "" || use.TokenSecret != gen.TokenSecret {
		t.Fatalf("first: use %+v, generated %+v", use, gen)
	}
	stored, err := readSecrets(dir)
	if err != nil || stored.APIKey != "" || stored.TokenSecret != gen.TokenSecret {
		t.Fatalf("stored %+v, %v; want only the generated token secret", stored, err)
	}

	use2, gen2, save, err := resolveSecrets(dir, secrets{})
	if err == nil {
		err = save()
	}
	if err != nil {
		t.Fatal(err)
	}
	if use2.TokenSecret != gen.TokenSecret || gen2.TokenSecret != "" || gen2.APIKey == "" {
		t.Fatalf("second: use %+v, generated %+v", use2, gen2)
	}
	use3, gen3, _, err := resolveSecrets(dir, secrets{})
	if err != nil || gen3 != (secrets{}) || use3 != use2 {
		t.Fatalf("third: use %+v, generated %+v, %v", use3, gen3, err)
	}

	// A loosened file is tightened again.
	path := filepath.Join(dir, secretsFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := resolveSecrets(dir, secrets{}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v; want 0600", fi.Mode().Perm())
	}

	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := resolveSecrets(dir, secrets{}); err == nil {
		t.Error("a corrupt secrets.json was accepted")
	}
}

// TestServeInProcess runs `serve` in-process with a config file whose
// settings a flag overrides, then stops it through its context.
func TestServeInProcess(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	src := "listen: 127.0.0.1:1\ntcp_listen: \"\"\nlog_level: debug\nmax_targets: 2\nbizzes:\n  - name: chat\n    target: user\n"
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(map[string]string{envAPIKey: "env-key", envTokenSecret: "env-token-secret-0123456789"})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, e.env, []string{"serve", "--data", data, "--config", cfgPath, "--listen", "127.0.0.1:0"})
	}()
	var si serverInfo
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if si, err = readServerInfo(data); err == nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, e.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if si.HTTP == "127.0.0.1:1" || si.TCP != "" {
		t.Errorf("server.json = %+v; want the flag's listen and no TCP", si)
	}
	if _, err := os.Stat(filepath.Join(data, secretsFile)); !os.IsNotExist(err) {
		t.Errorf("secrets.json written although both secrets came from the environment")
	}
	pe := newTestEnv(map[string]string{envAPIKey: "env-key"})
	if code := run(t.Context(), pe.env, []string{"publish", "--data-dir", data, "--biz", "chat", "--user", "u1", "--data", "1"}); code != 0 {
		t.Errorf("publish: exit %d: %s", code, pe.err)
	}
	pe = newTestEnv(map[string]string{envAPIKey: "env-key"})
	if code := run(t.Context(), pe.env, []string{"publish", "--data-dir", data, "--biz", "chat", "--user", "u1,u2,u3"}); code != 1 || !strings.Contains(pe.err.String(), "at most 2") {
		t.Errorf("publish to 3 users with max_targets 2: exit %d: %s", code, pe.err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, e.err)
	}
	if _, err := os.Stat(filepath.Join(data, serverFile)); !os.IsNotExist(err) {
		t.Errorf("server.json left behind after a clean stop")
	}
}

func TestServeRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", "/nonexistent/syncpoint.yaml"}, "read config"},
		{[]string{"--log-level", "loud"}, "log level"},
		{[]string{"--store", "postgres://u:s3cret@127.0.0.1:1/x?sslmode=disable"}, "store unavailable"}, // nothing listens on port 1
		{[]string{"--store", "mysql://127.0.0.1/x"}, "mysql"},
		{[]string{"--listen", "not-an-address"}, "listen"},
		{[]string{"--allowed-origins", "https://app.example.com/"}, `--allowed-origins: origin pattern "https://app.example.com/": an origin is a scheme and a host, with no path`},
	} {
		e := newTestEnv(nil)
		args := append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tcp-listen", ""}, tc.args...)
		if code := run(t.Context(), e.env, args); code == 0 || !strings.Contains(e.err.String(), tc.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want it to mention %q", tc.args, code, e.err, tc.want)
		}
		if strings.Contains(e.err.String(), "s3cret") {
			t.Errorf("serve %v: stderr shows the store URL's password: %q", tc.args, e.err)
		}
	}
}

// TestNegativeNumbersRefused checks every numeric and duration flag of
// serve, and the same settings in the config file: a negative value is a
// usage error (exit 2) that names the flag or key, and no server starts.
func TestNegativeNumbersRefused(t *testing.T) {
	cmd := newServeCmd(env{})
	var flags []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		switch f.Value.Type() {
		case "int", "int64", "duration", "float64":
			flags = append(flags, f.Name)
		}
	})
	for _, want := range []string{"heartbeat-interval", "max-frame-bytes", "send-queue", "shutdown-timeout", "rate-limit", "max-targets"} {
		if !slices.Contains(flags, want) {
			t.Fatalf("serve has no flag --%s", want)
		}
	}
	base := []string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tcp-listen", "", "--config", ""}
	for _, name := range flags {
		value := "-1"
		if cmd.Flags().Lookup(name).Value.Type() == "duration" {
			value = "-1s"
		}
		e := newTestEnv(map[string]string{envAPIKey: "k", envTokenSecret: "0123456789abcdef0123"})
		code := run(t.Context(), e.env, append(slices.Clone(base), "--"+name, value))
		if code != 2 || !strings.Contains(e.err.String(), "--"+name+" "+value+": must not be negative") {
			t.Errorf("serve --%s %s: exit %d, stderr %q", name, value, code, e.err)
		}
	}
	for _, v := range []string{"NaN", "+Inf"} {
		e := newTestEnv(nil)
		if code := run(t.Context(), e.env, append(slices.Clone(base), "--rate-limit", v)); code != 2 || !strings.Contains(e.err.String(), "--rate-limit") {
			t.Errorf("serve --rate-limit %s: exit %d, stderr %q", v, code, e.err)
		}
	}
	// Other commands' numbers too.
	for _, args := range [][]string{
		{"publish", "--biz", "chat", "--user", "u1", "--timeout", "-5s"},
		{"write", "--device", "d", "--biz", "b", "--id", "x", "--data", "{}", "--timeout", "-1s"},
		{"bench", "publish", "--concurrency", "-3"},
		{"serve", "--heap-floor-bytes", "-1"},
	} {
		e := newTestEnv(nil)
		if code := run(t.Context(), e.env, args); code != 2 || !strings.Contains(e.err.String(), "must not be negative") {
			t.Errorf("%v: exit %d, stderr %q", args, code, e.err)
		}
	}

	for _, key := range []string{"heartbeat_interval: -1s", "max_frame_bytes: -1", "send_queue: -1", "shutdown_timeout: -1s",
		"sweep_interval: -1s", "rate_limit: -1", "rate_limit: .nan", "rate_burst: -1", "max_body_bytes: -1", "max_targets: -1", "heap_floor_bytes: -1"} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(key+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		e := newTestEnv(map[string]string{envAPIKey: "k", envTokenSecret: "0123456789abcdef0123"})
		args := []string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tcp-listen", "", "--config", path}
		name, _, _ := strings.Cut(key, ":")
		if code := run(t.Context(), e.env, args); code != 2 || !strings.Contains(e.err.String(), name) {
			t.Errorf("config %q: exit %d, stderr %q", key, code, e.err)
		}
	}
}
