package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/internal/testcert"
)

// TestCrashDurability SIGKILLs the real server while 32 publishers are
// writing to a few channels, restarts it on the same data dir, and checks
// that every publish that got a 200 is there with its seq and data, and that
// seqs stay contiguous. Each round continues on the same data dir.
func TestCrashDurability(t *testing.T) {
	skipIfShort(t)
	const (
		rounds      = 3
		workers     = 32
		killAfter   = 300 // acks per round before the kill
		maxAckRound = 100000
	)
	data := filepath.Join(t.TempDir(), "data")
	config := writeConfig(t)
	users := []string{"u0", "u1", "u2", "u3"}
	var all []ack
	for round := range rounds {
		proc := MustStartServe(t, data, config, nil)
		p := newPublisher(proc.url(), secretsOf(t, data).APIKey)
		if round > 0 {
			checkDurable(t, p, users, all) // what the last kill left
		}
		stop := make(chan struct{})
		var once sync.Once
		acks := hammer(p, round, workers, users, stop, func(n int) {
			if n >= killAfter {
				once.Do(func() {
					// Kill mid-stream: the other publishers are still
					// sending. Stop them only once the process is gone.
					proc.cmd.Process.Signal(syscall.SIGKILL)
					go func() { <-proc.exited; close(stop) }()
				})
			}
		})
		proc.wait(t)
		if len(acks) < killAfter || len(acks) > maxAckRound {
			t.Fatalf("round %d: %d acks", round, len(acks))
		}
		all = append(all, acks...)
		t.Logf("round %d: %d publishes acked before SIGKILL", round, len(acks))
	}
	proc := MustStartServe(t, data, config, nil)
	p := newPublisher(proc.url(), secretsOf(t, data).APIKey)
	checkDurable(t, p, users, all)
}

// TestGracefulShutdown sends SIGTERM while publishers are writing: the
// server exits 0, and every acked publish is there after a restart.
func TestGracefulShutdown(t *testing.T) {
	skipIfShort(t)
	data := filepath.Join(t.TempDir(), "data")
	config := writeConfig(t)
	users := []string{"u0", "u1"}
	proc := MustStartServe(t, data, config, nil)
	p := newPublisher(proc.url(), secretsOf(t, data).APIKey)
	stop := make(chan struct{})
	var once sync.Once
	acks := hammer(p, 0, 32, users, stop, func(n int) {
		if n >= 200 {
			once.Do(func() {
				proc.cmd.Process.Signal(syscall.SIGTERM)
				go func() { <-proc.exited; close(stop) }()
			})
		}
	})
	if code := proc.wait(t); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; want 0\nstderr:\n%s", code, proc.stderr)
	}
	if !strings.Contains(proc.stderr.String(), "shut down cleanly") {
		t.Errorf("no clean shutdown logged:\n%s", proc.stderr)
	}
	if _, err := os.Stat(filepath.Join(data, serverFile)); !os.IsNotExist(err) {
		t.Errorf("server.json is still there after a clean shutdown (err %v)", err)
	}
	// A new variable: the goroutine above still reads the first proc.
	again := MustStartServe(t, data, config, nil)
	checkDurable(t, newPublisher(again.url(), p.key), users, acks)
	t.Logf("%d publishes acked before SIGTERM", len(acks))
}

// TestGeneratedSecrets checks that secrets are generated on the first
// start, kept with mode 0600, printed only then, and reused afterwards by
// the server and by the client subcommands.
func TestGeneratedSecrets(t *testing.T) {
	skipIfShort(t)
	data := filepath.Join(t.TempDir(), "data")
	config := writeConfig(t)

	first := MustStartServe(t, data, config, nil)
	sec := secretsOf(t, data)
	fi, err := os.Stat(filepath.Join(data, secretsFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("secrets.json mode = %v; want 0600", mode)
	}
	out := first.stdout.String()
	if !strings.Contains(out, sec.APIKey) || !strings.Contains(out, sec.TokenSecret) {
		t.Errorf("first start did not print the generated secrets:\n%s", out)
	}
	if strings.Contains(first.stderr.String(), sec.APIKey) {
		t.Errorf("the API key went to the log")
	}
	first.cmd.Process.Signal(syscall.SIGTERM)
	if code := first.wait(t); code != 0 {
		t.Fatalf("exit code = %d\n%s", code, first.stderr)
	}

	second := MustStartServe(t, data, config, nil)
	if again := secretsOf(t, data); again != sec {
		t.Fatalf("secrets changed on the second start: %+v -> %+v", sec, again)
	}
	if out := second.stdout.String(); strings.Contains(out, sec.APIKey) || strings.Contains(out, sec.TokenSecret) {
		t.Errorf("second start printed the secrets again:\n%s", out)
	}

	// The client subcommands find the server and the key in the data dir.
	code, stdout, stderr := runCLI(t, nil, "publish", "--data-dir", data, "--biz", "chat", "--user", "u1,u2", "--data", `{"text":"hi"}`)
	if code != 0 || !strings.Contains(stdout, `"chat/user:u1"`) || !strings.Contains(stdout, `"chat/user:u2"`) {
		t.Fatalf("publish: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, "token", "--data", data, "--user", "u1", "--groups", "g1,g2")
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, stderr)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(sec.TokenSecret)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(stdout))
	if err != nil || c.User != "u1" || fmt.Sprint(c.Groups) != "[g1 g2]" {
		t.Fatalf("token verifies as %+v, %v", c, err)
	}

	// A key given by the environment wins and is not written down.
	second.cmd.Process.Signal(syscall.SIGTERM)
	second.wait(t)
	third := MustStartServe(t, data, config, []string{"SYNCPOINT_API_KEY=from-env-key"})
	if secretsOf(t, data) != sec {
		t.Errorf("secrets.json changed when the key came from the environment")
	}
	np := newPublisher(third.url(), "from-env-key")
	if _, ok, err := np.publish(t.Context(), "u1", `1`); !ok {
		t.Fatalf("publish with the environment's key: %v", err)
	}
}

// TestPortTakenGeneratesNothing starts the real binary on a port another
// socket holds: it exits 1 naming the address, and neither writes nor
// prints a secret that no server uses.
func TestPortTakenGeneratesNothing(t *testing.T) {
	skipIfShort(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, args := range [][]string{
		{"--listen", busy.Addr().String(), "--tcp-listen", "127.0.0.1:0"},
		{"--listen", "127.0.0.1:0", "--tcp-listen", busy.Addr().String()},
	} {
		data := filepath.Join(t.TempDir(), "data")
		all := append([]string{"serve", "--data", data, "--config", ""}, args...)
		code, stdout, stderr := runCLI(t, nil, all...)
		if code != 1 || !strings.Contains(stderr, busy.Addr().String()) {
			t.Errorf("serve %v: exit %d, stderr %q; want 1 naming the address", args, code, stderr)
		}
		if stdout != "" {
			t.Errorf("serve %v printed %q", args, stdout)
		}
		if _, err := os.Stat(filepath.Join(data, secretsFile)); !os.IsNotExist(err) {
			t.Errorf("serve %v wrote secrets.json (%v)", args, err)
		}
	}
}

// TestServeTLS runs the real binary with a certificate: the client
// commands find its https:// URL in server.json and publish over it with
// --tls-ca, and a SIGHUP after the files were replaced serves the new
// certificate to new connections on both listeners.
func TestServeTLS(t *testing.T) {
	skipIfShort(t)
	data := filepath.Join(t.TempDir(), "data")
	cert := testcert.New(t)
	proc := MustStartServe(t, data, writeConfig(t), nil, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile)
	if !strings.HasPrefix(proc.info.URL, "https://") {
		t.Fatalf("server.json = %+v; want an https URL", proc.info)
	}
	code, stdout, stderr := runCLI(t, nil, "publish", "--data-dir", data, "--tls-ca", cert.CertFile, "--biz", "chat", "--user", "u1", "--data", `"over tls"`)
	if code != 0 || !strings.Contains(stdout, `"seq":1`) {
		t.Fatalf("publish over https: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "publish", "--data-dir", data, "--biz", "chat", "--user", "u1"); code != 1 || !strings.Contains(stderr, "certificate") {
		t.Errorf("publish without --tls-ca: exit %d, %s; want 1 for the untrusted certificate", code, stderr)
	}

	served := func(addr string) []byte {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // compared, not trusted
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	next := testcert.New(t)
	for _, f := range [][2]string{{next.KeyFile, cert.KeyFile}, {next.CertFile, cert.CertFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	proc.cmd.Process.Signal(syscall.SIGHUP)
	want := next.Server.Certificates[0].Certificate[0]
	deadline := time.Now().Add(30 * time.Second)
	for !bytes.Equal(served(proc.info.HTTP), want) {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not bring the new certificate\n%s", proc.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !bytes.Equal(served(proc.info.TCP), want) {
		t.Error("the TCP listener still presents the old certificate")
	}
	proc.cmd.Process.Signal(syscall.SIGTERM)
	if code := proc.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGHUP and SIGTERM\n%s", code, proc.stderr)
	}
}
