package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTLSCheckInterval is how often the certificate files are looked at
// for a change: rotation tools write new files and expect them served
// without a restart, and a minute is soon enough for certificates that
// live for weeks. SIGHUP (Server.ReloadTLS) applies a change at once.
const DefaultTLSCheckInterval = time.Minute

// certs holds the key pair both listeners present. It is read on every
// handshake through GetCertificate, so a reload takes effect for the next
// connection without touching the open ones.
type certs struct {
	certFile, keyFile string
	logger            *slog.Logger
	cur               atomic.Pointer[tls.Certificate]

	mu   sync.Mutex // serializes loads
	seen fileStamps // of the files that cur was loaded from
}

// fileStamps tell whether a file changed: its size and modification time.
type fileStamps [2]struct {
	size int64
	mod  time.Time
}

func stampsOf(paths ...string) (fileStamps, error) {
	var st fileStamps
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return st, err
		}
		st[i].size, st[i].mod = fi.Size(), fi.ModTime()
	}
	return st, nil
}

// loadCerts loads the key pair, failing when it cannot: a server does not
// start without the certificate it was given.
func loadCerts(certFile, keyFile string, logger *slog.Logger) (*certs, error) {
	c := &certs{certFile: certFile, keyFile: keyFile, logger: logger}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload loads the files again. On error the certificate served so far
// stays: a rotation caught between writing the certificate and its key
// must not take the listeners down.
func (c *certs) reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := stampsOf(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	c.cur.Store(&pair)
	c.seen = st
	return nil
}

// changed reports whether either file differs from what was last loaded.
func (c *certs) changed() bool {
	st, err := stampsOf(c.certFile, c.keyFile)
	c.mu.Lock()
	defer c.mu.Unlock()
	return err == nil && st != c.seen
}

func (c *certs) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// watch reloads the files whenever they change, checking every interval,
// until ctx is done. A change that does not load is logged once and tried
// again at each later change.
func (c *certs) watch(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var failed fileStamps
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !c.changed() {
			continue
		}
		st, _ := stampsOf(c.certFile, c.keyFile)
		if st == failed {
			continue
		}
		if err := c.reload(); err != nil {
			failed = st
			c.logger.Error("server: the TLS certificate files changed but do not load; still serving the previous certificate", "err", err)
			continue
		}
		c.logger.Info("server: TLS certificate reloaded", "cert", c.certFile)
	}
}

// config is the TLS configuration of a listener; nextProtos is its ALPN
// list (h2 and http/1.1 for the HTTP listener, none for raw TCP).
func (c *certs) config(nextProtos ...string) *tls.Config {
	return &tls.Config{GetCertificate: c.get, MinVersion: tls.VersionTLS12, NextProtos: nextProtos}
}

// ReloadTLS loads the certificate and key files again, for the next
// connections on both listeners; the command runs it on SIGHUP. On error
// the previous certificate stays in use. Without TLS it does nothing.
func (s *Server) ReloadTLS() error {
	if s.certs == nil {
		return nil
	}
	if err := s.certs.reload(); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.logger.Info("server: TLS certificate reloaded", "cert", s.certs.certFile)
	return nil
}

// errNoTLS is returned by New when only one of the two files is given.
var errNoTLS = errors.New("server: TLS needs both a certificate and a key file")
