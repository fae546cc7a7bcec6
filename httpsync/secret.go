package httpsync

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/syncpoint/syncpoint"
)

// secretKey is the blob that holds the key ack keys and cursors are signed
// with. It is made on first use and kept in the store, not derived from the
// token secret: the server may verify tokens with a public key only, and
// rotating the token secret should not throw every device's cursor away.
// Every node of a cluster reads it from the shared store.
const secretKey = "httpsync/secret"

const secretLen = 32

// key returns the signing key, loading it from the store or making it.
func (h *Handler) key(ctx context.Context) ([]byte, error) {
	h.secretMu.Lock()
	defer h.secretMu.Unlock()
	if h.secret != nil {
		return h.secret, nil
	}
	b, err := h.store.Blob(ctx, secretKey)
	if errors.Is(err, syncpoint.ErrNotFound) {
		b = make([]byte, secretLen)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("make signing key: %w", err)
		}
		if err := h.store.PutBlob(ctx, secretKey, b, zeroTime); err != nil {
			return nil, fmt.Errorf("keep signing key: %w", err)
		}
		// Read it back: of two nodes that made one at once, the last
		// write is the key both use from now on.
		b, err = h.store.Blob(ctx, secretKey)
	}
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	if len(b) != secretLen {
		return nil, fmt.Errorf("load signing key: %d bytes, want %d", len(b), secretLen)
	}
	h.secret = b
	return b, nil
}
