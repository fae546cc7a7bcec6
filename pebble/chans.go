package pebble

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
)

// chanState is the in-memory state of one channel. The committer owns head,
// which runs ahead of the disk's durable state by the batches still waiting
// for their fsync; readers use only the fields under mu.
type chanState struct {
	name string // "biz/target"
	ch   syncpoint.Channel

	head    meta   // committer only
	lastTxn uint64 // committer only: the last batch that wrote this channel
	// dirty (committer only) means the batch must save the meta. Plain
	// appends leave it clean: the newest entry's key records LastSeq.
	dirty bool

	mu     sync.Mutex
	loaded bool
	// durable is the state as of the last synced batch.
	durable meta
	// pendingFirst is the highest FirstSeq of any applied batch in this
	// epoch: entries below it may already be gone from what readers see.
	pendingFirst uint64
	// resetGen counts resets; resetTxn is the batch of the newest one,
	// which readers wait for, since a reset reuses seqs.
	resetGen uint64
	resetTxn uint64
	// evicted means the state left the cache and a reader holding it must
	// look the channel up again.
	evicted bool
}

// chanCache maps channel names to their states, loading them from disk on
// first touch.
type chanCache struct {
	s  *Store
	mu sync.Mutex
	m  map[string]*chanState
}

func (c *chanCache) init(s *Store) {
	c.s = s
	c.m = make(map[string]*chanState)
}

// get returns the loaded state of ch, caching it. ch must be valid.
func (c *chanCache) get(ch syncpoint.Channel) (*chanState, error) {
	name := ch.String()
	c.mu.Lock()
	st := c.m[name]
	if st == nil {
		st = &chanState{name: name, ch: ch}
		c.m[name] = st
	}
	c.mu.Unlock()
	return c.load(st)
}

// lookup is get for readers: a channel that does not exist is not cached,
// so reading many empty channels does not fill the cache. Its state then
// stays empty, which is right as of the moment the disk was read: the
// committer caches a channel before it writes it.
func (c *chanCache) lookup(ch syncpoint.Channel) (*chanState, error) {
	name := ch.String()
	c.mu.Lock()
	st := c.m[name]
	c.mu.Unlock()
	if st != nil {
		return c.load(st)
	}
	_, ok, err := c.s.get(metaKey(name))
	if err != nil {
		return nil, fmt.Errorf("load channel %s: %w", name, err)
	}
	if ok {
		return c.get(ch)
	}
	c.mu.Lock()
	st = c.m[name]
	c.mu.Unlock()
	if st != nil {
		return c.load(st)
	}
	return &chanState{name: name, ch: ch, loaded: true}, nil
}

func (c *chanCache) load(st *chanState) (*chanState, error) {
	name := st.name
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.loaded {
		return st, nil
	}
	// The committer writes a channel only after loading it here, so what
	// is on disk now is durable.
	v, ok, err := c.s.get(metaKey(name))
	if err != nil {
		return nil, fmt.Errorf("load channel %s: %w", name, err)
	}
	if ok {
		m, err := decodeMeta(v)
		if err != nil {
			return nil, fmt.Errorf("load channel %s: %w", name, err)
		}
		last, err := c.s.lastEntrySeq(name)
		if err != nil {
			return nil, fmt.Errorf("load channel %s: %w", name, err)
		}
		m.LastSeq = max(m.LastSeq, last)
		st.head, st.durable, st.pendingFirst = m, m, m.FirstSeq
	}
	st.loaded = true
	return st, nil
}

// getByName is get for a name read back from a key.
func (c *chanCache) getByName(name string) (*chanState, error) {
	ch, err := syncpoint.ParseChannel(name)
	if err != nil {
		return nil, fmt.Errorf("channel %q: %w", name, errCorrupt)
	}
	return c.get(ch)
}

// evict drops idle states beyond the cache limit. Only the committer calls
// it, so no batch can be touching a state it judges idle.
func (c *chanCache) evict(synced uint64, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	over := len(c.m) - limit
	if over <= 0 {
		return
	}
	// Evict a little more than needed so this does not run on every batch.
	over += limit / 16
	for name, st := range c.m {
		if over <= 0 {
			break
		}
		if st.lastTxn > synced {
			continue
		}
		st.mu.Lock()
		idle := st.resetTxn <= synced
		if idle {
			st.evicted = true
		}
		st.mu.Unlock()
		if idle {
			delete(c.m, name)
			over--
		}
	}
}

// lastEntrySeq returns the seq of the channel's newest stored entry, 0 if
// it has none. Anything that can delete the newest entry (a sweep, a reset)
// saves the meta, so the meta covers the rest.
func (s *Store) lastEntrySeq(name string) (uint64, error) {
	prefix := chanPrefix(pEntry, name)
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	var seq uint64
	if it.Last() {
		k := it.Key()
		seq = binary.BigEndian.Uint64(k[len(k)-seqLen:])
	}
	return seq, errors.Join(it.Error(), it.Close())
}

func newEpoch() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}
