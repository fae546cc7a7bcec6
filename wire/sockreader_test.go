package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair is a connected pair of loopback TCP sockets.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestSocketReaderHoldsNoBufferBetweenReads(t *testing.T) {
	client, server := tcpPair(t)
	r := NewSocketReader(server, []byte("early:"))
	if r.raw == nil {
		t.Fatal("a TCP socket should be read through its descriptor")
	}
	if _, err := client.Write([]byte("one,two")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "early:" {
		t.Fatalf("read %q, %v; want the bytes handed over first", got, err)
	}
	got = make([]byte, 4)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "one," {
		t.Fatalf("read %q, %v", got, err)
	}
	if r.buf == nil || r.w-r.r != 3 {
		t.Fatalf("buffer %v, %d buffered; want the rest of the read held", r.buf != nil, r.w-r.r)
	}
	got = make([]byte, 3)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "two" {
		t.Fatalf("read %q, %v", got, err)
	}
	if r.buf != nil {
		t.Fatal("the buffer is still held once its bytes were read")
	}

	// A read that waits holds no buffer while it waits.
	done := make(chan string, 1)
	go func() {
		b := make([]byte, 16)
		n, err := r.Read(b)
		if err != nil {
			done <- err.Error()
			return
		}
		done <- string(b[:n])
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := client.Write([]byte("later")); err != nil {
		t.Fatal(err)
	}
	if s := <-done; s != "later" {
		t.Fatalf("read %q after the wait", s)
	}
}

func TestSocketReaderLargeReadsGoStraightThrough(t *testing.T) {
	client, server := tcpPair(t)
	r := NewSocketReader(server, nil)
	want := bytes.Repeat([]byte("0123456789abcdef"), 3*SocketBufferBytes/16+5)
	go func() { _, _ = client.Write(want) }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, %v; they differ from what was sent", len(got), err)
	}
}

func TestSocketReaderEndsAsTheSocketDoes(t *testing.T) {
	t.Run("eof", func(t *testing.T) {
		client, server := tcpPair(t)
		r := NewSocketReader(server, nil)
		_, _ = client.Write([]byte("x"))
		client.Close()
		b, err := io.ReadAll(r)
		if err != nil || string(b) != "x" {
			t.Fatalf("read %q, %v; want x then a clean end", b, err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		_, server := tcpPair(t)
		r := NewSocketReader(server, nil)
		_ = server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := r.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past the deadline: %v", err)
		}
		if r.buf != nil {
			t.Fatal("a failed wait left a buffer held")
		}
	})
	t.Run("close", func(t *testing.T) {
		_, server := tcpPair(t)
		r := NewSocketReader(server, nil)
		errc := make(chan error, 1)
		go func() {
			_, err := r.Read(make([]byte, 8))
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		server.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read across a close: %v", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		client, server := tcpPair(t)
		r := NewSocketReader(server, nil)
		_ = client.(*net.TCPConn).SetLinger(0)
		client.Close()
		_, err := io.ReadAll(r)
		var op *net.OpError
		if !errors.As(err, &op) {
			t.Fatalf("read of a reset socket: %v, want a *net.OpError", err)
		}
	})
}

func TestSocketReaderWithoutDescriptor(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	r := NewSocketReader(server, nil)
	if r.raw != nil {
		t.Fatal("net.Pipe has no descriptor")
	}
	go func() { _, _ = client.Write([]byte("piped")); client.Close() }()
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "piped" {
		t.Fatalf("read %q, %v", b, err)
	}
	if r.buf != nil {
		t.Fatal("the buffer is still held")
	}
}
