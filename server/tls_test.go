package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/client"
	"github.com/syncpoint/syncpoint/internal/testcert"
	"github.com/syncpoint/syncpoint/wire"
)

// MustRunTLSServer runs a server whose listeners speak TLS with a fresh
// test certificate.
func MustRunTLSServer(t *testing.T, interval time.Duration) (*runningServer, *testcert.Cert) {
	t.Helper()
	cfg := testConfig(t)
	cert := testcert.New(t)
	cfg.TLSCert, cfg.TLSKey, cfg.TLSCheckInterval = cert.CertFile, cert.KeyFile, interval
	r := MustRunServer(t, cfg)
	r.URL = r.Server.URL()
	if !strings.HasPrefix(r.URL, "https://") {
		t.Fatalf("URL = %s; want https", r.URL)
	}
	return r, cert
}

// TestHTTPSAndWSS publishes over HTTPS with HTTP/2 and receives it on a
// device over wss://, dialed by a client whose transport would take h2 if
// the server offered it for the upgrade, and on one over TCP+TLS.
func TestHTTPSAndWSS(t *testing.T) {
	r, cert := MustRunTLSServer(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: cert.Client, ForceAttemptHTTP2: true}}

	wc, resp, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(r.URL, "https")+"/v1/connect", &websocket.DialOptions{
		HTTPClient: h2, Subprotocols: []string{wire.SubprotocolJSON},
	})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer wc.CloseNow()
	if resp.Proto != "HTTP/1.1" {
		t.Errorf("the upgrade went over %s", resp.Proto)
	}
	tc, err := tls.Dial("tcp", r.TCPAddr(), cert.Client)
	if err != nil {
		t.Fatalf("tcp+tls dial: %v", err)
	}
	defer tc.Close()
	conns := []frameConn{wsFrames{wc}, wire.NewTCPConn(tc, 0)}
	for i, c := range conns {
		tok, _ := auth.Mint([]byte(testTokenSecret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
		hello := &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: tok, DeviceID: []string{"phone", "tablet"}[i], Bizzes: []string{"chat"}}
		if err := c.Write(ctx, &wire.Frame{Hello: hello}); err != nil {
			t.Fatal(err)
		}
		if f, err := c.Read(ctx); err != nil || f.Welcome == nil {
			t.Fatalf("device %d: want welcome, got %+v, %v", i, f, err)
		}
	}

	req, _ := http.NewRequest("POST", r.URL+"/v1/publish", strings.NewReader(`{"biz":"chat","users":["u1"],"data":"over h2"}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	pr, err := h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pr.Body.Close()
	if pr.StatusCode != http.StatusOK || pr.Proto != "HTTP/2.0" {
		t.Fatalf("publish over HTTPS: %d over %s; want 200 over HTTP/2.0", pr.StatusCode, pr.Proto)
	}
	for i, c := range conns {
		for {
			f, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("device %d: %v", i, err)
			}
			if f.Push != nil && len(f.Push.Entries) == 1 {
				if got := string(f.Push.Entries[0].Data); got != `"over h2"` {
					t.Fatalf("device %d got %s", i, got)
				}
				break
			}
		}
	}

	// Plain HTTP to the TLS port is refused.
	if pr, err := http.Get("http://" + r.Addr() + "/healthz"); err == nil {
		pr.Body.Close()
		if pr.StatusCode == http.StatusOK {
			t.Error("plain HTTP is served on the TLS listener")
		}
	}
}

// TestSDKOverWSS runs the Go SDK against the HTTPS listener.
func TestSDKOverWSS(t *testing.T) {
	r, cert := MustRunTLSServer(t, 0)
	publishTLS(t, r.URL, cert, `"for the sdk"`)
	tok, _ := auth.Mint([]byte(testTokenSecret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	got := make(chan string, 4)
	c, err := client.Open(client.Config{
		Server: r.URL, TLS: cert.Client, Token: tok, DeviceID: "sdk", Bizzes: []string{"chat"},
		DBPath: filepath.Join(t.TempDir(), "sdk.db"),
		Handler: func(_ *sql.Tx, batch []client.Entry) error {
			for _, e := range batch {
				got <- string(e.Data)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go c.Run(ctx)
	select {
	case d := <-got:
		if d != `"for the sdk"` {
			t.Fatalf("the SDK got %s", d)
		}
	case <-ctx.Done():
		t.Fatal("the SDK received nothing over wss://")
	}
}

func publishTLS(t *testing.T, url string, cert *testcert.Cert, data string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cert.Client}}
	req, _ := http.NewRequest("POST", url+"/v1/publish", strings.NewReader(`{"biz":"chat","users":["u1"],"data":`+data+`}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
}

// servedCert returns the certificate a listener presents now.
func servedCert(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the certificate is compared, not trusted
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw
}

// replaceCert writes next's certificate and key over the files cur names,
// each through a rename, as rotation tools do.
func replaceCert(t *testing.T, cur, next *testcert.Cert) {
	t.Helper()
	for _, f := range [][2]string{{next.KeyFile, cur.KeyFile}, {next.CertFile, cur.CertFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		tmp := f[1] + ".new"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f[1]); err != nil {
			t.Fatal(err)
		}
	}
}

func leafOf(t *testing.T, c *testcert.Cert) []byte {
	t.Helper()
	return c.Server.Certificates[0].Certificate[0]
}

// TestTLSReload rotates the certificate files under a running server: on
// ReloadTLS (what SIGHUP runs), and on its own when the files change, both
// listeners present the new certificate to new connections, while a
// connection opened before goes on.
func TestTLSReload(t *testing.T) {
	r, cert := MustRunTLSServer(t, time.Hour) // no watching in this part
	if !bytes.Equal(servedCert(t, r.Addr()), leafOf(t, cert)) {
		t.Fatal("the server does not present its certificate")
	}
	old, err := tls.Dial("tcp", r.TCPAddr(), cert.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	second := testcert.New(t)
	replaceCert(t, cert, second)
	if err := r.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{r.Addr(), r.TCPAddr()} {
		if !bytes.Equal(servedCert(t, addr), leafOf(t, second)) {
			t.Errorf("%s: the old certificate after ReloadTLS", addr)
		}
	}
	// A broken pair does not take the listeners down.
	if err := os.WriteFile(cert.KeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.ReloadTLS(); err == nil {
		t.Error("ReloadTLS accepted a broken key")
	}
	if !bytes.Equal(servedCert(t, r.Addr()), leafOf(t, second)) {
		t.Error("a failed reload changed the certificate served")
	}
	// The connection opened before the reloads still works.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	oc := wire.NewTCPConn(old, 0)
	tok, _ := auth.Mint([]byte(testTokenSecret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err := oc.Write(ctx, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: tok, DeviceID: "old", Bizzes: []string{"chat"}}}); err != nil {
		t.Fatal(err)
	}
	if f, err := oc.Read(ctx); err != nil || f.Welcome == nil {
		t.Errorf("a connection from before the reload: %+v, %v", f, err)
	}

	// Watching: a change of the files is picked up without a signal.
	w, wcert := MustRunTLSServer(t, 10*time.Millisecond)
	third := testcert.New(t)
	replaceCert(t, wcert, third)
	deadline := time.Now().Add(20 * time.Second)
	for !bytes.Equal(servedCert(t, w.Addr()), leafOf(t, third)) {
		if time.Now().After(deadline) {
			t.Fatal("the changed certificate files were never loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !bytes.Equal(servedCert(t, w.TCPAddr()), leafOf(t, third)) {
		t.Error("the TCP listener did not get the new certificate")
	}
}
