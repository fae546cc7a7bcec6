package pebble

import (
	"encoding/binary"
	"time"
)

// Key prefixes; see the package comment for the layout.
const (
	pMeta    = 'm'
	pEntry   = 'e'
	pKey     = 'k'
	pIdem    = 'd'
	pExpiry  = 'x'
	pSyncPt  = 'p'
	pUserPos = 'q'
	pCursor  = 'r'
	pStore   = 'S'
	pDevice  = 'v'
	pUserDev = 'u'
	pBiz     = 'z'
	pBizChan = 'c'
	pBlob    = 'b'
	pToken   = 'a'
	pTokHash = 'h'
	pUserTok = 'o'
	xEntry   = 'e'
	xTomb    = 't'
	xIdem    = 'i'
	xBlob    = 'b'
	xToken   = 'a'
	timeLen  = 12
	seqLen   = 8
)

// appendStr appends len16(s) s; s longer than 65535 bytes never reaches
// here because every caller validates lengths first.
func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// cutStr reads a len16-prefixed string from b.
func cutStr(b []byte) (string, []byte, bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

func readTime(b []byte) time.Time {
	sec := int64(binary.BigEndian.Uint64(b) ^ (1 << 63))
	return time.Unix(sec, int64(binary.BigEndian.Uint32(b[8:]))).UTC()
}

func metaKey(ch string) []byte { return appendStr([]byte{pMeta}, ch) }

// chanPrefix returns the prefix of every row of kind p in channel ch.
func chanPrefix(p byte, ch string) []byte { return appendStr([]byte{p}, ch) }

func entryKey(ch string, seq uint64) []byte {
	return appendEntryKey(make([]byte, 0, 1+2+len(ch)+seqLen), ch, seq)
}

func appendEntryKey(b []byte, ch string, seq uint64) []byte {
	b = appendStr(append(b, pEntry), ch)
	return binary.BigEndian.AppendUint64(b, seq)
}

func keyKey(ch, key string) []byte   { return append(chanPrefix(pKey, ch), key...) }
func idemKey(ch, ikey string) []byte { return append(chanPrefix(pIdem, ch), ikey...) }
func syncPointKey(dev, ch string) []byte {
	return positionKey(pSyncPt, dev, ch)
}
func deviceKey(id string) []byte { return append([]byte{pDevice}, id...) }
func bizKey(name string) []byte  { return append([]byte{pBiz}, name...) }
func blobKey(key string) []byte  { return append([]byte{pBlob}, key...) }

func tokenKey(id string) []byte       { return append([]byte{pToken}, id...) }
func tokenHashKey(hash []byte) []byte { return append([]byte{pTokHash}, hash...) }

// userTokenKey sorts a user's tokens by creation, newest first.
func userTokenKey(user string, created time.Time, id string) []byte {
	return append(invTime(appendStr([]byte{pUserTok}, user), created), id...)
}

// positionKey is the key of a position kept per owner and channel: a
// device's sync point ('p'), a user's position ('q'), a cursor ('r').
func positionKey(p byte, owner, ch string) []byte {
	return appendStr(appendStr([]byte{p}, owner), ch)
}

// bizChanKey indexes a channel under its biz, so dropping a biz need not
// scan every channel.
func bizChanKey(biz, ch string) []byte { return append(appendStr([]byte{pBizChan}, biz), ch...) }

// storeKey names a setting of the store as a whole, such as its format.
func storeKey(name string) []byte { return append([]byte{pStore}, name...) }

// userDeviceKey sorts a user's devices by last seen, newest first.
func userDeviceKey(user string, seen time.Time, dev string) []byte {
	return append(invTime(appendStr([]byte{pUserDev}, user), seen), dev...)
}

// invTime appends t so that later times sort first.
func invTime(b []byte, t time.Time) []byte {
	var v [timeLen]byte
	appendTime(v[:0], t)
	for i := range v {
		v[i] = ^v[i]
	}
	return append(b, v[:]...)
}

func expiryKey(at time.Time, kind byte, payload []byte) []byte {
	b := make([]byte, 0, 1+timeLen+1+len(payload))
	b = appendTime(append(b, pExpiry), at)
	return append(append(b, kind), payload...)
}

// appendEntryExpiryKey appends the expiry row of an entry or tombstone.
// Only tombstone rows need the epoch (see sweepEntry).
func appendEntryExpiryKey(b []byte, at time.Time, kind byte, ch string, seq uint64, epoch string) []byte {
	b = append(appendTime(append(b, pExpiry), at), kind)
	b = binary.BigEndian.AppendUint64(appendStr(b, ch), seq)
	return append(b, epoch...)
}

// prefixEnd returns the smallest key above every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
