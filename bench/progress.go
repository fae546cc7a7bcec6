package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressEvery is how often the progress line is rewritten.
const progressEvery = time.Second

// startProgress rewrites a progress line on w every second until the
// returned function is called, which clears it. A nil w shows nothing.
func startProgress(w io.Writer, name string, line func() string) (stop func()) {
	if w == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprint(w, "\r\x1b[K")
				return
			case <-t.C:
				fmt.Fprintf(w, "\r\x1b[K%s: %s", name, line())
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}
