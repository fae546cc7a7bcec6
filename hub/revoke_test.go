package hub_test

import (
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/wire"
)

// tokenTable is a verifier of revocable tokens, as the opaque token
// verifier is: each token string stands for claims with a token id, until
// it is deleted.
type tokenTable struct {
	mu     sync.Mutex
	claims map[string]syncpoint.Claims
}

func (v *tokenTable) Verify(token string) (syncpoint.Claims, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.claims[token]
	if !ok {
		return syncpoint.Claims{}, syncpoint.Errorf(syncpoint.CodeUnauthorized, "unknown token")
	}
	return c, nil
}

func (v *tokenTable) delete(token string) {
	v.mu.Lock()
	delete(v.claims, token)
	v.mu.Unlock()
}

// Revoking a token closes every session opened with it, on every
// transport, with 4001 at once; sessions of other tokens go on.
func TestRevokeClosesTheTokensSessions(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	v := &tokenTable{claims: map[string]syncpoint.Claims{
		"secret-a": {User: "u1", ExpiresAt: exp, TokenID: "tok-a"},
		"secret-b": {User: "u1", ExpiresAt: exp, TokenID: "tok-b"},
	}}
	e := newEnv(t, func(c *hub.Config) { c.Verifier = v })
	ws := e.dial(wsJSON)
	ws.mustHello("secret-a", "d-ws", "chat")
	tcp := e.dial(tcpRaw)
	tcp.mustHello("secret-a", "d-tcp", "chat")
	other := e.dial(wsProto)
	other.mustHello("secret-b", "d-other", "chat")

	v.delete("secret-a")
	e.hub.Revoke("tok-a")
	for _, c := range []*client{ws, tcp} {
		if got := c.waitClose(5 * time.Second); got.Code != wire.CloseUnauthorized {
			t.Fatalf("%s: close %+v, want 4001", c.tr, got)
		}
	}
	e.publish("chat", u1, `"still here"`)
	if got := other.collect(1, 5*time.Second); string(got[0].Data) != `"still here"` {
		t.Fatalf("the other token's session got %s", got[0].Data)
	}
	again := e.dial(tcpRaw)
	if _, err := again.hello("secret-a", "d-ws", "chat"); err == nil || again.closed.Code != wire.CloseUnauthorized {
		t.Fatalf("hello with the revoked token: %v, want 4001", err)
	}
}
