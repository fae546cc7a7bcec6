package postgres

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// proxy is a TCP proxy on loopback between the store and PostgreSQL, so
// that a test can take the database away, give it back, and lose one
// connection's traffic at a chosen moment, without touching the server
// other tests share.
type proxy struct {
	tb     testing.TB
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	pairs map[string]*pair // by the client's address
}

// pair is one proxied connection.
type pair struct {
	client, server net.Conn
	mu             sync.Mutex
	cut            cutMode
	swallow        bool // drop the server's answer to COMMIT, then close
	closeOnce      sync.Once
}

type cutMode int

const (
	cutNone cutMode = iota
	// cutBefore drops the client's next write and closes the connection:
	// the server never gets it.
	cutBefore
	// cutAfterCommit forwards everything until the server's answer to a
	// COMMIT, which it drops, and closes: the transaction committed, and
	// the client never hears of it.
	cutAfterCommit
)

// startProxy proxies to the host and port of connString and returns the
// proxy; connString's copy through it is p.url(connString).
func startProxy(tb testing.TB, connString string) *proxy {
	tb.Helper()
	u, err := url.Parse(connString)
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{tb: tb, target: u.Host, pairs: make(map[string]*pair)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	tb.Cleanup(p.stop)
	return p
}

// url returns connString with its host and port replaced by the proxy's.
func (p *proxy) url(connString string) string {
	u, err := url.Parse(connString)
	if err != nil {
		p.tb.Fatal(err)
	}
	u.Host = p.addr
	return u.String()
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			pr := &pair{client: c, server: s}
			p.mu.Lock()
			p.pairs[c.RemoteAddr().String()] = pr
			p.mu.Unlock()
			go pr.up()
			go pr.down()
		}
	}()
}

// stop closes the listener and every connection: the database is gone.
func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for k, pr := range p.pairs {
		pr.close()
		delete(p.pairs, k)
	}
}

// restart listens again on the same address: the database is back.
func (p *proxy) restart() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.tb.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// arm makes the connection whose client end is at clientAddr lose its
// next exchange in the given way.
func (p *proxy) arm(clientAddr string, mode cutMode) {
	p.mu.Lock()
	pr := p.pairs[clientAddr]
	p.mu.Unlock()
	if pr == nil {
		p.tb.Errorf("proxy: no connection from %s", clientAddr)
		return
	}
	pr.mu.Lock()
	pr.cut = mode
	pr.mu.Unlock()
}

func (pr *pair) close() {
	pr.closeOnce.Do(func() {
		pr.client.Close()
		pr.server.Close()
	})
}

// up copies the client's writes to the server.
func (pr *pair) up() {
	defer pr.close()
	buf := make([]byte, 64<<10)
	for {
		n, err := pr.client.Read(buf)
		if n > 0 {
			pr.mu.Lock()
			mode := pr.cut
			pr.cut = cutNone
			if mode == cutAfterCommit {
				pr.swallow = true
			}
			pr.mu.Unlock()
			if mode == cutBefore {
				return
			}
			if _, werr := pr.server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// commitComplete is the CommandComplete message that answers COMMIT.
var commitComplete = []byte("C\x00\x00\x00\x0bCOMMIT\x00")

// down copies the server's answers to the client.
func (pr *pair) down() {
	defer pr.close()
	buf := make([]byte, 64<<10)
	for {
		n, err := pr.server.Read(buf)
		if n > 0 {
			pr.mu.Lock()
			swallow := pr.swallow
			pr.mu.Unlock()
			if swallow && bytes.Contains(buf[:n], commitComplete) {
				return
			}
			if _, werr := pr.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				pr.client.Close()
			}
			return
		}
	}
}
