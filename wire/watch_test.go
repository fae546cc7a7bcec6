package wire

import (
	"testing"
	"time"
)

// A write deadline moves only when it would move by more than an eighth of
// its timeout, and at once when it comes earlier or goes.
func TestWriteDeadline(t *testing.T) {
	var sets []time.Time
	set := func(d time.Time) error { sets = append(sets, d); return nil }
	var w WriteDeadline
	t0 := time.Now().Add(8 * time.Second) // a slack of about a second
	for _, tc := range []struct {
		d   time.Time
		set bool
	}{
		{t0, true},                              // the first
		{t0.Add(500 * time.Millisecond), false}, // a little later: kept
		{t0.Add(2 * time.Second), true},         // more than the slack: moved
		{t0, true},                              // earlier: at once
		{time.Time{}, true},                     // none
		{t0, true},                              // and back
		{t0.Add(time.Millisecond), false},
	} {
		n := len(sets)
		w.Set(tc.d, set)
		if got := len(sets) > n; got != tc.set || (got && !sets[len(sets)-1].Equal(tc.d)) {
			t.Fatalf("deadline %v: set %v, want %v (sets %v)", tc.d, got, tc.set, sets)
		}
	}
	// A short timeout gets a short slack: 80 ms gives 10 ms.
	w = WriteDeadline{}
	sets = nil
	near := time.Now().Add(80 * time.Millisecond)
	w.Set(near, set)
	w.Set(near.Add(30*time.Millisecond), set)
	if len(sets) != 2 {
		t.Fatalf("a deadline 30 ms later than one 80 ms away was not set: %v", sets)
	}
}
