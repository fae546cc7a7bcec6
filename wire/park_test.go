//go:build linux

package wire

import (
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// fired is a ready function and what it tells.
func fired() (func(), chan struct{}) {
	ch := make(chan struct{}, 2)
	return func() { ch <- struct{}{} }, ch
}

func waitFired(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: ready did not run", what)
	}
}

// quiet fails if ready runs within a short while; it cannot prove that it
// never will, only catch a park that fires for nothing.
func quiet(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: ready ran", what)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestSocketReaderIdleAndPark(t *testing.T) {
	client, server := tcpPair(t)
	r := NewSocketReader(server, nil)
	p := make([]byte, 16)

	r.Idle()
	if n, err := r.Read(p); !errors.Is(err, ErrIdle) || n != 0 {
		t.Fatalf("an idle read of nothing: %d, %v; want ErrIdle", n, err)
	}
	ready, ch := fired()
	if !r.Park(ready) {
		t.Fatal("Park refused an empty socket")
	}
	quiet(t, ch, "parked with nothing sent")
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFired(t, ch, "bytes came")
	r.Idle()
	if n, err := r.Read(p); err != nil || string(p[:n]) != "hello" {
		t.Fatalf("after the park: %q, %v", p[:n], err)
	}

	// Bytes that came before the park fire it at once (level-triggered).
	if _, err := client.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let them arrive first, most runs
	if !r.Park(ready) {
		t.Fatal("Park refused")
	}
	waitFired(t, ch, "bytes before the park")
	// Once fired, a park is spent: Unpark has nothing to cancel.
	if r.Unpark() {
		t.Fatal("Unpark cancelled a park that had fired")
	}

	// Buffered bytes: no park, the read has them.
	if n, err := r.Read(p[:2]); err != nil || string(p[:n]) != "ea" {
		t.Fatalf("read %q, %v", p[:n], err)
	}
	if r.Park(ready) {
		t.Fatal("Park took a reader holding bytes")
	}
	r.Idle()
	if n, err := r.Read(p); err != nil || string(p[:n]) != "rly" {
		t.Fatalf("read %q, %v", p[:n], err)
	}

	// Unpark first: ready never runs, and the bytes wait for a read.
	if !r.Park(ready) {
		t.Fatal("Park refused")
	}
	if !r.Unpark() {
		t.Fatal("Unpark did not cancel a waiting park")
	}
	if _, err := client.Write([]byte("later")); err != nil {
		t.Fatal(err)
	}
	quiet(t, ch, "unparked")
	if n, err := r.Read(p); err != nil || string(p[:n]) != "later" {
		t.Fatalf("read %q, %v", p[:n], err)
	}

	// A hang-up fires a park, and the read sees the end.
	if !r.Park(ready) {
		t.Fatal("Park refused")
	}
	client.Close()
	waitFired(t, ch, "hang-up")
	if _, err := r.Read(p); err != io.EOF {
		t.Fatalf("after the hang-up: %v, want EOF", err)
	}
}

// Many sockets parked at once each fire once, for their own bytes, in
// whatever order the bytes come; and the next round's sockets, on the
// descriptors of the closed ones, confuse nothing.
func TestParkManySockets(t *testing.T) {
	const n = 200
	for round := range 3 {
		clients := make([]io.WriteCloser, n)
		readers := make([]*SocketReader, n)
		chans := make([]chan struct{}, n)
		for i := range n {
			c, s := tcpPair(t)
			clients[i], readers[i] = c, NewSocketReader(s, nil)
			var ready func()
			ready, chans[i] = fired()
			if !readers[i].Park(ready) {
				t.Fatalf("round %d: socket %d not parked", round, i)
			}
		}
		for _, i := range rand.Perm(n) {
			if _, err := clients[i].Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			waitFired(t, chans[i], "a socket's byte")
			var b [1]byte
			if _, err := readers[i].Read(b[:]); err != nil || b[0] != byte(i) {
				t.Fatalf("socket %d read %v, %v", i, b[0], err)
			}
		}
		for i := range n {
			if len(chans[i]) != 0 {
				t.Fatalf("socket %d fired twice", i)
			}
			clients[i].Close()
		}
	}
}

// A poller whose wait fails (its descriptor closed, here) lets every
// parked socket go, so that its reader reads on, and parks nothing more.
func TestBrokenPollerLetsEveryoneGo(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { p.run(); close(ran) }()
	var chans []chan struct{}
	for range 3 {
		_, server := tcpPair(t)
		r := NewSocketReader(server, nil)
		ready, ch := fired()
		if _, ok := p.park(r, ready); !ok {
			t.Fatal("park refused")
		}
		chans = append(chans, ch)
	}
	p.file.Close()
	<-ran
	for _, ch := range chans {
		waitFired(t, ch, "the poller broke")
	}
	_, server := tcpPair(t)
	r := NewSocketReader(server, nil)
	if _, ok := p.park(r, func() {}); ok {
		t.Fatal("a broken poller took a socket")
	}
}
