package local

import (
	"context"
	"errors"
	"testing"

	"github.com/syncpoint/syncpoint"
)

func TestBrokerDeliversInOrderUntilUnsubscribed(t *testing.T) {
	b := New()
	var got []uint64
	unsub, err := b.Subscribe(func(es []syncpoint.Entry) {
		for _, e := range es {
			got = append(got, e.Seq)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for seq := uint64(1); seq <= 3; seq++ {
		if err := b.Publish(ctx, []syncpoint.Entry{{Seq: seq}}); err != nil {
			t.Fatal(err)
		}
	}
	unsub()
	if len(b.subscribers()) != 0 {
		t.Fatal("subscriber still registered after unsubscribe")
	}
	_ = b.Publish(ctx, []syncpoint.Entry{{Seq: 4}})
	if len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("got seqs %v, want [1 2 3]", got)
	}
	b.Close()
	if err := b.Publish(ctx, nil); !errors.Is(err, syncpoint.ErrClosed) {
		t.Fatalf("publish after close: %v, want ErrClosed", err)
	}
}

// subscribers lists the registered subscription ids.
func (b *Broker) subscribers() []int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	ids := make([]int, 0, len(b.subs))
	for id := range b.subs {
		ids = append(ids, id)
	}
	return ids
}
