package faultnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// echo runs a server that sends back what it reads.
func echo(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func proxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := Listen(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg and reads back what comes within d.
func roundTrip(c net.Conn, msg []byte, d time.Duration) ([]byte, error) {
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return buf[:n], err
}

func TestCleanProxyPassesData(t *testing.T) {
	p := proxy(t)
	c := dial(t, p)
	msg := bytes.Repeat([]byte("syncpoint"), 10000)
	got, err := roundTrip(c, msg, 10*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes, %v; want the %d sent", len(got), err, len(msg))
	}
}

// A cut lets each connection pass at most MaxBytes, a different number on
// each, then closes it; healed, the proxy passes everything again.
func TestCutClosesMidStream(t *testing.T) {
	p := proxy(t)
	if err := p.Inject(Fault{Kind: Cut, MaxBytes: 1000, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("x"), 5000)
	var counts []int
	for range 4 {
		got, err := roundTrip(dial(t, p), msg, 10*time.Second)
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("read %d bytes, %v; want the connection closed", len(got), err)
		}
		if len(got) == 0 || len(got) > 1000 {
			t.Fatalf("%d bytes passed; want 1 to 1000", len(got))
		}
		counts = append(counts, len(got))
	}
	slices.Sort(counts)
	if len(slices.Compact(counts)) == 1 {
		t.Errorf("every connection was cut after %d bytes", counts[0])
	}
	p.Heal()
	if got, err := roundTrip(dial(t, p), msg, 10*time.Second); err != nil || len(got) != len(msg) {
		t.Fatalf("after Heal: %d bytes, %v", len(got), err)
	}
	if n := p.Injected()[Cut]; n != 1 {
		t.Fatalf("Injected()[Cut] = %d", n)
	}
}

// A half-open connection takes writes and gives nothing back, and stays
// open until the fault is healed.
func TestHalfOpenDropsSilently(t *testing.T) {
	p := proxy(t)
	c := dial(t, p)
	if _, err := roundTrip(c, []byte("before"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Inject(Fault{Kind: HalfOpen}); err != nil {
		t.Fatal(err)
	}
	got, err := roundTrip(c, []byte("during"), 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) || len(got) != 0 {
		t.Fatalf("read %q, %v; want nothing until the deadline", got, err)
	}
	p.Heal()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatal("the half-open connection still works after Heal; want it closed")
	}
}

func TestLatencyDelays(t *testing.T) {
	p := proxy(t)
	if err := p.Inject(Fault{Kind: Latency, Latency: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	start := time.Now()
	if _, err := roundTrip(c, []byte("ping"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("a round trip took %s under 200ms latency", d)
	}
}

// Every kind of fault is taken by toxiproxy, in both directions.
func TestEveryKindInjects(t *testing.T) {
	p := proxy(t)
	for _, k := range Kinds {
		for _, up := range []bool{false, true} {
			f := Fault{Kind: k, Upstream: up, Latency: time.Millisecond, RateKBs: 100, MaxBytes: 10, Delay: time.Millisecond, SliceBytes: 8}
			if err := p.Inject(f); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
	p.Heal()
	if n := p.Injected()[Reset]; n != 2 {
		t.Fatalf("Injected()[Reset] = %d; want 2", n)
	}
}

// One seed gives one schedule; another seed another.
func TestScheduleFollowsTheSeed(t *testing.T) {
	mk := func(seed uint64) []Step {
		c := &Chaos{Proxies: make([]*Proxy, 2), Seed: seed, Every: time.Second, Calm: 0.2}
		return c.Plan(50)
	}
	a, b, other := mk(42), mk(42), mk(43)
	str := func(ss []Step) (out []string) {
		for _, s := range ss {
			out = append(out, s.String())
		}
		return out
	}
	if !slices.Equal(str(a), str(b)) {
		t.Fatal("the same seed gave two schedules")
	}
	if slices.Equal(str(a), str(other)) {
		t.Fatal("two seeds gave one schedule")
	}
	seen := map[Kind]bool{}
	for _, s := range a {
		if s.Lasts < 500*time.Millisecond || s.Lasts > 6500*time.Millisecond {
			t.Fatalf("a step lasts %s; want 0.5s to 6.5s", s.Lasts)
		}
		for _, fs := range s.Faults {
			for _, f := range fs {
				seen[f.Kind] = true
			}
		}
	}
	if len(seen) != len(Kinds) {
		t.Fatalf("50 steps drew only %v", seen)
	}
}

// Run applies steps until its context ends and leaves the proxy clean.
func TestRunHealsAtTheEnd(t *testing.T) {
	p := proxy(t)
	c := &Chaos{Proxies: []*Proxy{p}, Seed: 3, Every: 20 * time.Millisecond, Kinds: []Kind{Latency, Slice}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	steps, err := c.Run(ctx)
	if err != nil || len(steps) < 3 {
		t.Fatalf("%d steps, %v", len(steps), err)
	}
	msg := []byte("after the storm")
	if got, err := roundTrip(dial(t, p), msg, 10*time.Second); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("after Run: %q, %v", got, err)
	}
}

// A reset ends the connection with a TCP RST once data comes.
func TestResetSendsRST(t *testing.T) {
	p := proxy(t)
	c := dial(t, p)
	if err := p.Inject(Fault{Kind: Reset, Delay: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("data"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after a reset: %v; want ECONNRESET", err)
	}
}

// A slow close holds the close back by its delay.
func TestSlowCloseDelaysTheClose(t *testing.T) {
	p := proxy(t)
	if err := p.Inject(Fault{Kind: SlowClose, Delay: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	if _, err := roundTrip(c, []byte("x"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after close: %v; want EOF", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("the close came back after %s; want at least the 300ms delay", d)
	}
}

// A bandwidth limit of 64 KB/s takes about a second for 64 KiB.
func TestBandwidthLimits(t *testing.T) {
	p := proxy(t)
	if err := p.Inject(Fault{Kind: Bandwidth, RateKBs: 64}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := roundTrip(dial(t, p), bytes.Repeat([]byte("b"), 64<<10), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Fatalf("64 KiB at 64 KB/s took %s", d)
	}
}

// Sliced data arrives whole and in order.
func TestSliceKeepsTheBytes(t *testing.T) {
	p := proxy(t)
	if err := p.Inject(Fault{Kind: Slice, SliceBytes: 7}); err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 5000)
	for i := range msg {
		msg[i] = byte(i)
	}
	if got, err := roundTrip(dial(t, p), msg, 20*time.Second); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("%d bytes back, %v", len(got), err)
	}
}

// With nothing upstream, a connection to the proxy is refused at once.
func TestUpstreamDownIsRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return // refused before the handshake was done
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v; want the connection closed", err)
	}
}

// What comes after data a half-open fault dropped never arrives, even
// once the fault has moved to the other direction: a TCP stream has no
// holes.
func TestHalfOpenLeavesNoHole(t *testing.T) {
	// The server counts, one line every few milliseconds.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	p, err := Listen(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p)
	lines := bufio.NewScanner(c)
	next := func() (int, bool) {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if !lines.Scan() {
			return 0, false
		}
		n, _ := strconv.Atoi(lines.Text())
		return n, true
	}
	last, ok := next()
	if !ok {
		t.Fatal("nothing came")
	}
	if err := p.Inject(Fault{Kind: HalfOpen}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := p.Set([]Fault{{Kind: HalfOpen, Upstream: true}}); err != nil {
		t.Fatal(err)
	}
	for {
		n, ok := next()
		if !ok {
			return // stalled, as it must be
		}
		if n != last+1 {
			t.Fatalf("line %d came after line %d: the stream has a hole", n, last)
		}
		last = n
	}
}
