package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/wire"
)

// frameConn is what both transports look like to this test.
type frameConn interface {
	Read(ctx context.Context) (*wire.Frame, error)
	Write(ctx context.Context, f *wire.Frame) error
}

type wsFrames struct{ c *websocket.Conn }

func (w wsFrames) Read(ctx context.Context) (*wire.Frame, error) {
	_, b, err := w.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	return wire.DecodeJSON(b)
}

func (w wsFrames) Write(ctx context.Context, f *wire.Frame) error {
	b, err := wire.EncodeJSON(nil, f)
	if err != nil {
		return err
	}
	return w.c.Write(ctx, websocket.MessageText, b)
}

// TestDevicesOverBothTransports runs a device over WebSocket and one over
// raw TCP against the assembled server: publish over HTTP, receive by push,
// and see both online in the device view.
func TestDevicesOverBothTransports(t *testing.T) {
	r := MustRunServer(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	wc, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(r.URL, "http")+"/v1/connect", &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolJSON}})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.CloseNow()
	nc, err := net.Dial("tcp", r.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	conns := []frameConn{wsFrames{wc}, wire.NewTCPConn(nc, 0)}
	for i, c := range conns {
		device := []string{"phone", "tablet"}[i]
		tok, err := auth.Mint([]byte(testTokenSecret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: tok, DeviceID: device, Bizzes: []string{"chat"}}}); err != nil {
			t.Fatal(err)
		}
		f, err := c.Read(ctx)
		if err != nil || f.Welcome == nil {
			t.Fatalf("%s: want welcome, got %+v, %v", device, f, err)
		}
	}
	publishText(t, r.URL, "u1", "to both")
	for i, c := range conns {
		for {
			f, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("device %d: %v", i, err)
			}
			if f.Push != nil && len(f.Push.Entries) == 1 {
				if got := string(f.Push.Entries[0].Data); got != `{"text":"to both"}` {
					t.Fatalf("device %d got %s", i, got)
				}
				break
			}
		}
	}
	for _, device := range []string{"phone", "tablet"} {
		var view struct {
			UserID string `json:"user_id"`
			Online bool   `json:"online"`
		}
		if code := do(t, http.MethodGet, r.URL+"/v1/devices/"+device, nil, &view); code != http.StatusOK || !view.Online || view.UserID != "u1" {
			t.Fatalf("device view of %s: HTTP %d %+v", device, code, view)
		}
	}
}

// TestPublicKeyTokens: a backend signs device tokens with its own ES256 key
// and the server holds only the public half.
func TestPublicKeyTokens(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.TokenPublicKey = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	r := MustRunServer(t, cfg)

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name   string
		signer *ecdsa.PrivateKey
		ok     bool
	}{{"signed by the backend's key", key, true}, {"signed by another key", other, false}} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "u9", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(tc.signer)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			wc, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(r.URL, "http")+"/v1/connect", &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolJSON}})
			if err != nil {
				t.Fatal(err)
			}
			defer wc.CloseNow()
			c := wsFrames{wc}
			if err := c.Write(ctx, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: tok, DeviceID: "es-" + fmt.Sprint(tc.ok), Bizzes: []string{"chat"}}}); err != nil {
				t.Fatal(err)
			}
			f, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ok && f.Welcome == nil {
				t.Fatalf("want welcome, got %+v", f.Error)
			}
			if !tc.ok && (f.Error == nil || f.Error.Code != wire.CloseUnauthorized) {
				t.Fatalf("want unauthorized, got %+v", f)
			}
		})
	}
}

func TestPprofOnItsOwnListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.PprofListen = "127.0.0.1:0"
	r := MustRunServer(t, cfg)
	if got := get(t, "http://"+r.PprofAddr()+"/debug/pprof/"); !strings.Contains(got, "goroutine") {
		t.Fatalf("pprof index: %.200s", got)
	}
	resp, err := http.Get(r.URL + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the API port serves the profiler: HTTP %d", resp.StatusCode)
	}
	if MustRunServer(t, testConfig(t)).PprofAddr() != "" {
		t.Fatal("the profiler is on by default")
	}
}
