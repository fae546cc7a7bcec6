package keylock

import (
	"context"
	"errors"
	"testing"
)

// A key is held by one at a time, other keys are not held up, and a wait
// ends with its context; the set forgets keys no one holds.
func TestSet(t *testing.T) {
	var s Set
	unlock, err := s.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Lock(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	other()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Lock(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a second lock of a held key: %v, want the context's error", err)
	}
	got := make(chan struct{})
	go func() {
		u, err := s.Lock(context.Background(), "a")
		if err == nil {
			u()
		}
		close(got)
	}()
	unlock()
	<-got
	s.mu.Lock()
	n := len(s.m)
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d keys kept after every lock was released", n)
	}
}
