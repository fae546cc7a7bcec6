package httpsync

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
)

// The blobs of queue sessions. Device ids and session ids hold no '/', so
// the keys are unambiguous.
const (
	blobSession = "httpsync/session/" // + session id: the session's state
	blobDevice  = "httpsync/device/"  // + device id: the device's newest session id
	blobAcks    = "httpsync/acks/"    // + device id: acks above the device's sync points
)

// noSession is what the device's blob holds after a start that found
// nothing to deliver: the start still superseded the open session.
const noSession = "-"

// sessionState is a queue session as the store keeps it, so that another
// node, or this one after a restart, serves its next page.
type sessionState struct {
	ID         string         `json:"id"`
	Device     string         `json:"device"`
	User       string         `json:"user"`
	Token      string         `json:"token"` // a hash of the token that started it
	Platform   string         `json:"platform,omitempty"`
	AppVersion string         `json:"app_version,omitempty"`
	Bizzes     []string       `json:"bizzes"`
	Channels   []sessionRange `json:"channels"`
	// Version counts the session's writes, so a node knows when the
	// stream it keeps for the session is stale.
	Version uint64    `json:"version"`
	Expires time.Time `json:"expires"`
	// Current is when the device's blob naming this session expires. It
	// outlives Expires by up to a session's idle time, so that a page
	// writes it again only once in a while.
	Current time.Time `json:"current"`
}

// sessionRange is what a session delivers of one channel: the entries
// after From up to End (the channel's last seq when the session started),
// of the epoch. Read is how far the pages have gone.
type sessionRange struct {
	Channel syncpoint.Channel `json:"channel"`
	Epoch   string            `json:"epoch"`
	From    uint64            `json:"from"`
	Read    uint64            `json:"read"`
	End     uint64            `json:"end"`
	// Done means nothing more of the channel comes in this session: it
	// reached End, or its history changed under the session (the next
	// start reports it), or its biz was deleted.
	Done bool `json:"done,omitempty"`
}

// left is at most how many entries of the range the pages have yet to go
// through; conditions, expiry and compaction skip some.
func (r *sessionRange) left() uint64 {
	if r.Done || r.Read >= r.End {
		return 0
	}
	return r.End - r.Read
}

func (s *sessionState) left() uint64 {
	var n uint64
	for i := range s.Channels {
		n += s.Channels[i].left()
	}
	return n
}

func newSessionID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make session id: %w", err)
	}
	return b64.EncodeToString(b[:]), nil
}

// validSessionID reports whether id could be one of ours, before it is
// used in a store key.
func validSessionID(id string) bool {
	if len(id) != 22 {
		return false
	}
	_, err := decodeB64(id)
	return err == nil
}

func (h *Handler) loadSession(ctx context.Context, id string) (*sessionState, error) {
	if !validSessionID(id) {
		return nil, errUnknownSession
	}
	b, err := h.store.Blob(ctx, blobSession+id)
	if errors.Is(err, syncpoint.ErrNotFound) {
		return nil, errUnknownSession
	} else if err != nil {
		return nil, fmt.Errorf("load session: %w", err)
	}
	var s sessionState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("load session %s: %w", id, err)
	}
	return &s, nil
}

func (h *Handler) saveSession(ctx context.Context, s *sessionState) error {
	s.Version++
	s.Expires = h.clock.Now().Add(h.cfg.SessionIdle)
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	if err := h.store.PutBlob(ctx, blobSession+s.ID, b, s.Expires); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// currentSession is the id of the device's newest session, "" when it has
// none (or noSession).
func (h *Handler) currentSession(ctx context.Context, device string) (string, error) {
	b, err := h.store.Blob(ctx, blobDevice+device)
	if errors.Is(err, syncpoint.ErrNotFound) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("load the device's session: %w", err)
	}
	return string(b), nil
}

// nameSession makes st the device's session, unless the device's blob
// names it long enough already.
func (h *Handler) nameSession(ctx context.Context, st *sessionState) error {
	if !st.Current.Before(st.Expires) {
		return nil
	}
	until := st.Expires.Add(h.cfg.SessionIdle)
	if err := h.setCurrentSession(ctx, st.Device, st.ID, until); err != nil {
		return err
	}
	st.Current = until
	return nil
}

func (h *Handler) setCurrentSession(ctx context.Context, device, id string, expires time.Time) error {
	if err := h.store.PutBlob(ctx, blobDevice+device, []byte(id), expires); err != nil {
		return fmt.Errorf("keep the device's session: %w", err)
	}
	return nil
}

var errUnknownSession = syncpoint.Errorf(syncpoint.CodeUnknownSession, "no open session of this device has this id: it expired, or never was; start a new one")

// live is what a node keeps in memory of a session it serves: the stream
// its pages read through, as of one version of the stored state.
type live struct {
	stream  *feed.Stream
	version uint64
	used    time.Time
}

// lives holds the streams of the sessions this node served lately.
type lives struct {
	mu    sync.Mutex
	m     map[string]*live
	swept time.Time
}

// take removes and returns the session's stream if it is of version v;
// a stale one is closed. The caller holds the session's lock.
func (l *lives) take(id string, v uint64) *feed.Stream {
	l.mu.Lock()
	defer l.mu.Unlock()
	x := l.m[id]
	if x == nil {
		return nil
	}
	delete(l.m, id)
	if x.version != v {
		x.stream.Close()
		return nil
	}
	return x.stream
}

// put keeps a session's stream until it is idle for idle.
func (l *lives) put(id string, s *feed.Stream, v uint64, now time.Time, idle time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]*live)
	}
	if old := l.m[id]; old != nil {
		old.stream.Close()
	}
	l.m[id] = &live{stream: s, version: v, used: now}
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for k, x := range l.m {
		if now.Sub(x.used) > idle {
			x.stream.Close()
			delete(l.m, k)
		}
	}
}

// drop closes a session's stream, if this node keeps one.
func (l *lives) drop(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if x := l.m[id]; x != nil {
		x.stream.Close()
		delete(l.m, id)
	}
}

// closeAll closes every stream kept.
func (l *lives) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, x := range l.m {
		x.stream.Close()
		delete(l.m, k)
	}
}
