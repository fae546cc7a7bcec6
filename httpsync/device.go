package httpsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
)

// The headers and query parameters that name the device. EventSource and
// some proxies cannot set headers, so the query parameters stand in.
const (
	headerDevice     = "X-Device-Id"
	headerBaseDevice = "X-Basecrm-Device-UUID"
	headerPlatform   = "X-Device-Platform"
	headerAppVersion = "X-Device-App-Version"
	queryDevice      = "device_id"
	queryPlatform    = "platform"
	queryAppVersion  = "app_version"
	maxDeviceField   = 64
)

// caller is a request's verified token and the device it names.
type caller struct {
	claims syncpoint.Claims
	id     syncpoint.Identity
	// token names the token for per-token limits: its id when it has one
	// (an opaque token), else a hash of it, so the token itself is never
	// kept.
	token string
}

// authenticate verifies the bearer token and reads the device's name and
// what it says about itself. It checks nothing against the store; bind
// does.
func (h *Handler) authenticate(r *http.Request) (*caller, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return nil, syncpoint.Errorf(syncpoint.CodeUnauthorized, "missing Authorization header; want Bearer <device token>")
	}
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, syncpoint.Errorf(syncpoint.CodeUnauthorized, "Authorization header: want Bearer <device token>")
	}
	token = strings.TrimSpace(token)
	claims, err := h.cfg.Verifier.Verify(token)
	if err != nil {
		if syncpoint.Code(err) == syncpoint.CodeInternal {
			return nil, fmt.Errorf("verify token: %w", err)
		}
		return nil, err
	}
	dev, err := deviceOf(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	platform := firstOf(r.Header.Get(headerPlatform), q.Get(queryPlatform))
	appVersion := firstOf(r.Header.Get(headerAppVersion), q.Get(queryAppVersion))
	if len(platform) > maxDeviceField || len(appVersion) > maxDeviceField {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "platform and app version are limited to %d bytes", maxDeviceField)
	}
	c := &caller{
		claims: claims,
		id:     syncpoint.Identity{DeviceID: dev, UserID: claims.User, Groups: claims.Groups, Platform: platform, AppVersion: appVersion},
		token:  claims.TokenID,
	}
	if c.token == "" {
		sum := sha256.Sum256([]byte(token))
		c.token = hex.EncodeToString(sum[:12])
	}
	if err := h.tokens.allow(c.token, h.cfg.TokenRate, h.cfg.TokenBurst, h.clock.Now()); err != nil {
		return nil, err
	}
	return c, nil
}

// deviceOf is the device id a request names, in a header or, for clients
// that cannot set one, the device_id query parameter.
func deviceOf(r *http.Request) (string, error) {
	var names []string
	for _, v := range []string{r.Header.Get(headerDevice), r.Header.Get(headerBaseDevice), r.URL.Query().Get(queryDevice)} {
		if v != "" && (len(names) == 0 || names[0] != v) {
			names = append(names, v)
		}
	}
	switch len(names) {
	case 0:
		return "", syncpoint.Errorf(syncpoint.CodeInvalid, "no device named: send %s (or %s), or the %s query parameter", headerDevice, headerBaseDevice, queryDevice)
	case 1:
	default:
		return "", syncpoint.Errorf(syncpoint.CodeInvalid, "the request names two devices, %q and %q; name one", clip(names[0]), clip(names[1]))
	}
	if err := syncpoint.ValidateID("device id", names[0]); err != nil {
		return "", err
	}
	return names[0], nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// clip bounds text from a client before it goes into a message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}

// bind holds the device to the token's user as a socket hello does (see
// feed.BindDevice).
func (h *Handler) bind(ctx context.Context, c *caller) error {
	return feed.BindDevice(ctx, h.store, &c.id, h.clock.Now())
}

// tokenLimits holds what each token may still do: a request rate and its
// open queue sessions. It is per node and in memory, so a restart forgets
// it; both limits only protect the server.
type tokenLimits struct {
	mu     sync.Mutex
	m      map[string]*tokenState
	pruned time.Time
}

type tokenState struct {
	limiter  *rate.Limiter        // nil: unlimited
	sessions map[string]time.Time // open session id -> when it expires
	used     time.Time
}

// tokenIdle is how long an unused token's state is kept.
const tokenIdle = 15 * time.Minute

func (t *tokenLimits) get(token string, perSec float64, burst int, now time.Time) *tokenState {
	if now.Sub(t.pruned) > tokenIdle {
		for k, s := range t.m {
			if now.Sub(s.used) > tokenIdle && !s.open(now) {
				delete(t.m, k)
			}
		}
		t.pruned = now
	}
	s := t.m[token]
	if s == nil {
		s = &tokenState{sessions: make(map[string]time.Time)}
		if perSec > 0 {
			s.limiter = rate.NewLimiter(rate.Limit(perSec), burst)
		}
		t.m[token] = s
	}
	s.used = now
	return s
}

func (s *tokenState) open(now time.Time) bool {
	for id, exp := range s.sessions {
		if !now.Before(exp) {
			delete(s.sessions, id)
		}
	}
	return len(s.sessions) > 0
}

// allow takes one request from the token's bucket.
func (t *tokenLimits) allow(token string, perSec float64, burst int, now time.Time) error {
	if perSec <= 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.get(token, perSec, burst, now)
	if !s.limiter.AllowN(now, 1) {
		return syncpoint.Errorf(syncpoint.CodeRateLimited, "this token made more than %g requests a second; slow down", perSec)
	}
	return nil
}

// openSession counts a new session of the token, replacing old (the
// device's session it supersedes, or ""), unless the token has max open.
func (t *tokenLimits) openSession(token, id, old string, max int, expires, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.get(token, 0, 0, now)
	delete(s.sessions, old)
	s.open(now)
	if len(s.sessions) >= max {
		return syncpoint.Errorf(syncpoint.CodeRateLimited, "this token has %d open sessions, the most it may; finish one, or let it expire", len(s.sessions))
	}
	s.sessions[id] = expires
	return nil
}

// touchSession moves a session's expiry, or forgets it (zero expires).
func (t *tokenLimits) touchSession(token, id string, expires time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[token]
	if s == nil {
		return
	}
	if expires.IsZero() {
		delete(s.sessions, id)
	} else if _, ok := s.sessions[id]; ok {
		s.sessions[id] = expires
	}
}
