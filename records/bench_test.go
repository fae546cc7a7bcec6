package records_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/wire"
)

// BenchmarkUpload measures records uploaded and acknowledged per second
// from 100 devices at once, each over its own WebSocket, each waiting for
// the write_result of one write (of up to 10 new records) before the next.
func BenchmarkUpload(b *testing.B) {
	const devices, perWrite = 100, 10
	e := MustOpenEnv(b, nil)
	conns := make([]*websocket.Conn, devices)
	for i := range conns {
		d := e.connect(fmt.Sprintf("u%d", i), fmt.Sprintf("bench-%d", i), nil)
		conns[i] = d.conn
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	data := json.RawMessage(`{"title":"a note","body":"` + strings.Repeat("x", 200) + `","done":false}`)
	var next atomic.Uint64
	errs := make(chan error, devices)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := 0; ; w++ {
				n := min(int64(perWrite), left.Add(-perWrite)+perWrite)
				if n <= 0 {
					return
				}
				recs := make([]wire.Record, n)
				for j := range recs {
					recs[j] = wire.Record{ID: fmt.Sprintf("%024x", next.Add(1)), Data: data}
				}
				write := &wire.Write{WriteID: fmt.Sprintf("b%d-%d", i, w), Changes: []wire.ChangeSet{{Biz: "notes", Created: recs}}}
				if err := roundTrip(c, write, int(n)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}

// roundTrip sends a write and waits for its result, which must save n.
func roundTrip(c *websocket.Conn, w *wire.Write, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg, err := wire.EncodeJSON(nil, &wire.Frame{Write: w})
	if err != nil {
		return err
	}
	if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		f, err := wire.DecodeJSON(b)
		if err != nil {
			return err
		}
		if f.Ping != nil {
			pong, _ := wire.EncodeJSON(nil, &wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}})
			if err := c.Write(ctx, websocket.MessageText, pong); err != nil {
				return err
			}
			continue
		}
		if r := f.WriteResult; r != nil && r.WriteID == w.WriteID {
			if r.Error != nil || len(r.Saved) != n {
				return fmt.Errorf("write %s: %d saved, errors %v %v", w.WriteID, len(r.Saved), r.Error, r.Errors)
			}
			return nil
		}
	}
}
