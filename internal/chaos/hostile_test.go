package chaos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/client"
	"github.com/syncpoint/syncpoint/internal/servetest"
	"github.com/syncpoint/syncpoint/wire"
)

// Hostile-load settings: a small frame limit makes oversized frames cheap
// to send, and a small send queue makes devices that stop reading slow
// consumers within seconds.
const (
	hostileFrameLimit = 64 << 10
	hostileSendQueue  = 256
	// rssBase and rssPerIdle state the memory bound while devices stop
	// reading: a stalled connection holds at most its queue (shared
	// entries) and the one push being written, about 1 MiB at most, so
	// the server's memory is bounded by its connections, not by what is
	// published to them.
	rssBase    = 64 << 20
	rssPerIdle = 1 << 20
)

// TestHostileLoad: while a few well-behaved SDK devices keep receiving
// (their delivery latency is logged for each phase, not asserted), the
// server is hit in turn by (a) devices that subscribe and then stop
// reading, while large entries are published to them: its resident memory,
// read from /proc, stays under a stated bound, and they are cut as slow
// consumers; (b) connections that never send a hello, on TCP and
// WebSocket, which it closes after its hello timeout; (c) a flood of bad
// tokens, all refused; (d) a flood of oversized frames, all refused at the
// header. At the end the well-behaved devices have every entry exactly
// once, in order.
func TestHostileLoad(t *testing.T) {
	bizzes := []biz{{name: "chat", target: "user"}, {name: "news", target: "global"}}
	e := newEnv(t, bizzes, "--max-frame-bytes", fmt.Sprint(hostileFrameLimit), "--send-queue", fmt.Sprint(hostileSendQueue), "--heartbeat-interval", "2s")
	nIdle := size(*flagIdle, 200, 1000)
	nSilent := size(*flagSilent, 2000, 10000)
	phase := faultTime(3 * time.Second)
	if soak() {
		phase = *flagSoak / 4
	}
	t.Logf("%d devices that stop reading, %d connections without a hello; %s per phase", nIdle, nSilent, phase)

	var lat latencies
	var good []*device
	for i := range 3 {
		o := devOpts{id: fmt.Sprintf("good%d", i), user: fmt.Sprintf("g%d", i), bizzes: []string{"chat"}}
		if i == 0 {
			o.tcp = e.srv.TCPAddr()
		} else {
			o.server = e.srv.URL()
		}
		d := e.openDevice(o)
		d.onEntry = func(en client.Entry) {
			if at, ok := sentAt(en.Data); ok {
				lat.add(time.Since(at))
			}
		}
		good = append(good, d)
		d.run()
	}
	load, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var targets []target
	for i := range good {
		targets = append(targets, target{biz: "chat", target: fmt.Sprintf("user:g%d", i)})
	}
	publish := e.backend("", e.api, 1, 20*time.Millisecond, time.Minute, targets)
	wg.Go(func() { publish(load) })
	mem := e.watchMemory(load)
	idleLoad, stopIdleLoad := context.WithCancel(load)
	wg.Go(func() { e.bigNews(idleLoad) })
	time.Sleep(time.Second)
	t.Logf("before: %s; server %s", lat.take(), mem.take())

	// (a) Devices that subscribe to news, then stop reading.
	idle := e.idleDevices(nIdle)
	time.Sleep(phase)
	peak := mem.take()
	bound := int64(rssBase + nIdle*rssPerIdle)
	t.Logf("(a) %d devices stopped reading: %s; server %s; bound %d MiB", nIdle, lat.take(), peak, bound>>20)
	if peak.max > bound {
		t.Errorf("the server's resident memory reached %d MiB with %d devices not reading; the bound is %d MiB", peak.max>>20, nIdle, bound>>20)
	}
	stopIdleLoad()
	cut := 0
	for _, c := range idle {
		if closedByPeer(c) {
			cut++
		}
		c.Close()
	}
	t.Logf("(a) %d of %d were cut by the server", cut, nIdle)
	if cut == 0 {
		t.Errorf("none of %d devices that stopped reading was cut as a slow consumer", nIdle)
	}

	// (b) Connections that never send a hello: the server answers each
	// with an error after its hello timeout (10s) and closes it (a
	// WebSocket once its close handshake times out, as this client never
	// answers it). While they wait, (c) and (d) run.
	silent, opened := e.silentConns(nSilent)
	t.Logf("(b) %d connections without a hello opened: %s; server %s", len(silent), lat.take(), mem.take())
	answered := make([]time.Duration, len(silent))
	stillOpen := make([]bool, len(silent))
	var swg sync.WaitGroup
	for i, c := range silent {
		swg.Go(func() {
			defer c.Close()
			c.SetReadDeadline(opened[i].Add(20 * time.Second))
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
				stillOpen[i] = true
				return
			}
			answered[i] = time.Since(opened[i])
			stillOpen[i] = !closedBefore(c, time.Now().Add(10*time.Second))
		})
	}

	// (c) Bad tokens, on every surface.
	refused, other := e.badTokens(phase)
	t.Logf("(c) %d bad tokens refused: %s; server %s", refused, lat.take(), mem.take())
	if len(other) > 0 {
		t.Errorf("bad tokens not refused as unauthorized: %v", other[:min(len(other), 10)])
	}

	// (d) Frames over the limit, refused at the header.
	tooLarge, other := e.oversized(phase)
	t.Logf("(d) %d oversized frames refused: %s; server %s", tooLarge, lat.take(), mem.take())
	if len(other) > 0 {
		t.Errorf("oversized frames not refused as too large: %v", other[:min(len(other), 10)])
	}

	swg.Wait()
	open, longest := 0, time.Duration(0)
	for i := range silent {
		if stillOpen[i] {
			open++
		}
		longest = max(longest, answered[i])
	}
	t.Logf("(b) all but %d of %d answered and closed by the server, the last answer %s after it opened: %s; server %s",
		open, len(silent), longest.Round(time.Millisecond), lat.take(), mem.take())
	if open > 0 {
		t.Errorf("%d of %d connections that sent no hello were not answered and closed", open, len(silent))
	}

	stopLoad()
	wg.Wait()
	var cs []caughtUp
	for _, d := range good {
		cs = append(cs, d)
	}
	e.converge(e.api, time.Minute, cs...)
	e.check(e.api, good...)
}

// bigNews publishes 4 KiB news entries, about 200 a second, for the devices
// that stop reading to choke on. They are not checked: only the
// well-behaved devices' channels are.
func (e *env) bigNews(ctx context.Context) {
	pad := strings.Repeat("x", 4<<10)
	body := []byte(`{"biz":"news","global":true,"data":{"pad":"` + pad + `"}}`)
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = e.api.PublishJSON(rctx, body)
		cancel()
		time.Sleep(5 * time.Millisecond)
	}
}

// memWatch samples the server's resident memory.
type memWatch struct {
	mu  sync.Mutex
	max int64
	now int64
	err error
}

type memPeak struct{ max, now int64 }

func (p memPeak) String() string {
	return fmt.Sprintf("RSS %d MiB (peak %d MiB)", p.now>>20, p.max>>20)
}

// watchMemory samples every 50ms until ctx is done.
func (e *env) watchMemory(ctx context.Context) *memWatch {
	w := &memWatch{}
	pid := e.srv.PID()
	go func() {
		for ctx.Err() == nil {
			m, err := servetest.ReadMemory(pid)
			w.mu.Lock()
			if err != nil {
				w.err = err
			} else {
				w.now, w.max = m.RSS, max(w.max, m.RSS)
			}
			w.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return w
}

// take returns the peak since the last take, and the latest sample.
func (w *memWatch) take() memPeak {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := memPeak{max: w.max, now: w.now}
	w.max = w.now
	return p
}

// dialSmall dials TCP with a small receive buffer, so a connection that is
// not read fills up after a few KiB.
func dialSmall(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return d.Dial("tcp", addr)
}

// idleDevices opens n raw TCP sessions that say hello for news and then
// never read.
func (e *env) idleDevices(n int) []net.Conn {
	e.t.Helper()
	tok := e.token("idle")
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				c, err := dialSmall(e.srv.TCPAddr())
				if err != nil {
					failed.Add(1)
					continue
				}
				hello, _ := wire.EncodeFrame(nil, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: tok,
					DeviceID: fmt.Sprintf("idle%05d", i), Bizzes: []string{"news"}}})
				if _, err := c.Write(hello); err != nil {
					failed.Add(1)
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		e.t.Fatalf("%d of %d idle devices could not connect", failed.Load(), n)
	}
	return conns
}

// closedByPeer reads what a connection holds until its end: true when the
// server closed it (it was cut), false when it is still open.
func closedByPeer(c net.Conn) bool {
	return closedBefore(c, time.Now().Add(2*time.Second))
}

// closedBefore reads and drops what comes until the peer closes (true) or
// the deadline passes (false).
func closedBefore(c net.Conn, deadline time.Time) bool {
	c.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, c)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// silentConns opens n connections that never send a hello: half raw TCP,
// half WebSocket past the upgrade. It returns them with when each opened.
func (e *env) silentConns(n int) ([]net.Conn, []time.Time) {
	e.t.Helper()
	conns := make([]net.Conn, n)
	opened := make([]time.Time, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				var c net.Conn
				var err error
				if i%2 == 0 {
					c, err = net.DialTimeout("tcp", e.srv.TCPAddr(), 10*time.Second)
				} else {
					c, err = wsUpgrade(e.srv.HTTPAddr())
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i], opened[i] = c, time.Now()
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		e.t.Fatalf("%d of %d silent connections could not connect", failed.Load(), n)
	}
	return conns, opened
}

// wsUpgrade does a WebSocket upgrade by hand and returns the raw
// connection, past the 101 answer, with nothing sent since.
func wsUpgrade(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	rand.Read(key)
	req := "GET /v1/connect HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + wire.SubprotocolJSON + "\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		c.Close()
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 0, 512)
	one := make([]byte, 1)
	for !strings.HasSuffix(string(buf), "\r\n\r\n") {
		if _, err := c.Read(one); err != nil {
			c.Close()
			return nil, err
		}
		buf = append(buf, one[0])
		if len(buf) > 4096 {
			c.Close()
			return nil, errors.New("upgrade answer too long")
		}
	}
	c.SetReadDeadline(time.Time{})
	if !strings.HasPrefix(string(buf), "HTTP/1.1 101") {
		c.Close()
		return nil, fmt.Errorf("upgrade: %q", strings.SplitN(string(buf), "\r\n", 2)[0])
	}
	return c, nil
}

// badTokens sends bad tokens for d, from 8 goroutines, in hellos on TCP
// and WebSocket and to the HTTP sync API. It returns how many were
// refused as unauthorized and what else came back.
func (e *env) badTokens(d time.Duration) (refused int, other []string) {
	expired, err := auth.Mint([]byte(e.secret), auth.Claims{User: "u", ExpiresAt: time.Now().Add(-time.Hour)}, time.Now().Add(-2*time.Hour))
	if err != nil {
		e.t.Fatal(err)
	}
	forged, err := auth.Mint([]byte("not-the-secret"), auth.Claims{User: "u", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	garbage := make([]byte, 64)
	rand.Read(garbage)
	tokens := []string{expired, forged, hex.EncodeToString(garbage), "a.b.c", strings.Repeat("x", 4000)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	hc := &http.Client{Timeout: 10 * time.Second}
	for w := range 8 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				tok := tokens[(w+i)%len(tokens)]
				var res string
				switch i % 3 {
				case 0:
					res = helloTCP(e.srv.TCPAddr(), tok)
				case 1:
					res = helloWS(e.srv.HTTPAddr(), tok)
				default:
					res = syncHTTP(hc, e.srv.URL(), tok)
				}
				mu.Lock()
				if res == "4001" || res == "401" {
					refused++
				} else {
					other = append(other, res)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return refused, other
}

func hello(tok string) *wire.Frame {
	return &wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: tok, DeviceID: "hostile", Bizzes: []string{"chat"}}}
}

// helloTCP sends a hello with tok on raw TCP and returns the code of the
// error frame that answers it.
func helloTCP(addr, tok string) string {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	b, _ := wire.EncodeFrame(nil, hello(tok))
	if _, err := c.Write(b); err != nil {
		return "write: " + err.Error()
	}
	return tcpAnswer(c)
}

// tcpAnswer reads the first frame and returns its error code.
func tcpAnswer(c net.Conn) string {
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	p, err := wire.NewReader(c, 1<<20).Next()
	if err != nil {
		return "read: " + err.Error()
	}
	f, err := wire.DecodeProto(p)
	if err != nil || f.Error == nil {
		return fmt.Sprintf("frame %v %v", f, err)
	}
	return fmt.Sprint(uint32(f.Error.Code))
}

// helloWS sends a hello with tok on a WebSocket and returns its close
// status.
func helloWS(addr, tok string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/connect", &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolJSON}})
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.CloseNow()
	b, _ := wire.EncodeJSON(nil, hello(tok))
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		return "write: " + err.Error()
	}
	return wsClose(ctx, c)
}

// wsClose reads until the close and returns its status.
func wsClose(ctx context.Context, c *websocket.Conn) string {
	c.SetReadLimit(1 << 20)
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			if st := websocket.CloseStatus(err); st != -1 {
				return fmt.Sprint(int(st))
			}
			return "read: " + err.Error()
		}
	}
}

// syncHTTP asks for a one-shot sync with tok and returns the status.
func syncHTTP(hc *http.Client, base, tok string) string {
	req, _ := http.NewRequest("POST", base+"/v1/sync", strings.NewReader(`{"entities":[{"name":"chat"}]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Device-Id", "hostile")
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "post: " + err.Error()
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

// oversized sends frames over the limit for d, from 8 goroutines: TCP
// length prefixes that declare more, and WebSocket messages that are more.
// It returns how many were refused as too large and what else came back.
func (e *env) oversized(d time.Duration) (refused int, other []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	junk := make([]byte, 2*hostileFrameLimit)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				var res string
				if (w+i)%2 == 0 {
					res = bigTCP(e.srv.TCPAddr(), junk)
				} else {
					res = bigWS(e.srv.HTTPAddr(), junk)
				}
				mu.Lock()
				// Some WebSocket stacks say 1009 for 4009 (protocol.md).
				if res == "4009" || res == "1009" {
					refused++
				} else {
					other = append(other, res)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return refused, other
}

// bigTCP declares a frame of twice the limit and sends a little of it.
func bigTCP(addr string, junk []byte) string {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	n := len(junk)
	hdr := []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	if _, err := c.Write(append(hdr, junk[:1024]...)); err != nil {
		return "write: " + err.Error()
	}
	return tcpAnswer(c)
}

// bigWS sends one WebSocket message of twice the limit.
func bigWS(addr string, junk []byte) string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/connect", &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolJSON}})
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.CloseNow()
	// The write may fail once the server has refused the header and
	// closed; its close status is what counts.
	_ = c.Write(ctx, websocket.MessageText, junk)
	return wsClose(ctx, c)
}
