// Command centrifugo is the other half of the comparison in
// docs/benchmarks.md: it drives a Centrifugo server with the shape of
// `syncpoint bench pubsub` (N WebSocket subscribers on one channel, P HTTP
// publishers each sending its next publication when the last was answered)
// and reports what that command reports: delivered messages per second,
// publish-to-subscriber latency, and the server's CPU per delivered
// message, read from /proc for the server's process id.
//
// It speaks Centrifugo's JSON protocol over coder/websocket, as syncpoint's
// bench devices do, and checks that every subscriber got every message
// exactly once. Centrifugo's clients send no acks.
//
//	go run ./bench/centrifugo --pid $(pidof centrifugo) --api-key KEY
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

type config struct {
	ws, api, apiKey, channel string
	pid                      int
	devices, publishers      int
	entries, size            int
	rate                     float64
	drain                    time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.ws, "ws", "ws://127.0.0.1:8000/connection/websocket", "Centrifugo's WebSocket endpoint")
	flag.StringVar(&c.api, "api", "http://127.0.0.1:8000/api", "Centrifugo's HTTP API")
	flag.StringVar(&c.apiKey, "api-key", "", "the HTTP API key (http_api.key)")
	flag.StringVar(&c.channel, "channel", "bench", "channel to subscribe and publish to")
	flag.IntVar(&c.pid, "pid", 0, "the server's process id, for its CPU time (required)")
	flag.IntVar(&c.devices, "devices", 100, "subscribers")
	flag.IntVar(&c.publishers, "publishers", 2, "concurrent publishers")
	flag.IntVar(&c.entries, "entries", 5000, "publications in all")
	flag.IntVar(&c.size, "size", 128, "bytes of each publication's data")
	flag.Float64Var(&c.rate, "rate", 0, "publications per second over all publishers, to compare at syncpoint's rate (0: as fast as answered)")
	flag.DurationVar(&c.drain, "drain", 10*time.Second, "how long to wait for deliveries after the last publish")
	flag.Parse()
	if c.pid <= 0 || c.apiKey == "" {
		fmt.Fprintln(os.Stderr, "centrifugo: --pid and --api-key are required")
		os.Exit(2)
	}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "centrifugo:", err)
		os.Exit(1)
	}
}

// subscriber is one client and what it received.
type subscriber struct {
	conn *websocket.Conn
	mu   sync.Mutex
	got  []bool // by publication number
	dups int
	lat  []time.Duration
	last time.Time
	n    int
}

func run(ctx context.Context, c config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subs := make([]*subscriber, c.devices)
	var all sync.WaitGroup
	var received atomic.Int64
	want := int64(c.devices) * int64(c.entries)
	done := make(chan struct{})
	for i := range subs {
		s, err := subscribe(ctx, c)
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		s.got = make([]bool, c.entries)
		subs[i] = s
		all.Add(1)
		go func() {
			defer all.Done()
			s.read(ctx, func() {
				if received.Add(1) == want {
					close(done)
				}
			})
		}()
	}

	cpu0, self0 := procCPU(c.pid), procCPU(os.Getpid())
	start := time.Now()
	var next atomic.Int64
	var pubErr atomic.Value
	var pubs sync.WaitGroup
	pubLat := make([][]time.Duration, c.publishers)
	pad := strings.Repeat("x", max(c.size-40, 1))
	for p := range c.publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for {
				n := next.Add(1) - 1
				if n >= int64(c.entries) {
					return
				}
				if c.rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(float64(n) / c.rate * float64(time.Second)))))
				}
				t := time.Now()
				if err := publish(ctx, client, c, n, t, pad); err != nil {
					pubErr.Store(err)
					return
				}
				pubLat[p] = append(pubLat[p], time.Since(t))
			}
		}()
	}
	pubs.Wait()
	published := time.Since(start)
	if err, _ := pubErr.Load().(error); err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(c.drain):
	}
	cpu1, self1 := procCPU(c.pid), procCPU(os.Getpid())
	cancel()
	for _, s := range subs {
		s.conn.CloseNow()
	}
	all.Wait()

	var lat []time.Duration
	var last time.Time
	lost, dups := int64(0), 0
	for _, s := range subs {
		lat = append(lat, s.lat...)
		dups += s.dups
		if s.last.After(last) {
			last = s.last
		}
		for _, ok := range s.got {
			if !ok {
				lost++
			}
		}
	}
	var pl []time.Duration
	for _, l := range pubLat {
		pl = append(pl, l...)
	}
	got := received.Load()
	runFor := last.Sub(start)
	fmt.Printf("centrifugo pubsub: %d publishers, %d publications of %d B, to %d subscribers on %q\n", c.publishers, c.entries, c.size, c.devices, c.channel)
	fmt.Printf("  published        %d in %.3fs, %.0f/s\n", c.entries, published.Seconds(), float64(c.entries)/published.Seconds())
	fmt.Printf("  publish latency  %s\n", percentiles(pl))
	fmt.Printf("  delivered        %d deliveries in %.3fs, %.0f/s\n", got, runFor.Seconds(), float64(got)/runFor.Seconds())
	fmt.Printf("  latency          %s\n", percentiles(lat))
	fmt.Printf("  delivery         %d of %d received; lost %d, duplicated %d\n", got, want, lost, dups)
	server := cpu1 - cpu0
	fmt.Printf("  cpu              server %.2f s (%.1f µs per delivered message), load generator %.2f s\n",
		server.Seconds(), server.Seconds()/float64(max(got, 1))*1e6, (self1 - self0).Seconds())
	if lost > 0 || dups > 0 {
		return errors.New("deliveries were lost or duplicated")
	}
	return nil
}

// subscribe connects a client and subscribes it to the channel.
func subscribe(ctx context.Context, c config) (*subscriber, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, c.ws, nil)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(16 << 20)
	for id, cmd := range []string{`{"id":1,"connect":{}}`, `{"id":2,"subscribe":{"channel":"` + c.channel + `"}}`} {
		if err := conn.Write(dctx, websocket.MessageText, []byte(cmd)); err != nil {
			return nil, err
		}
		_, b, err := conn.Read(dctx)
		if err != nil {
			return nil, err
		}
		var reply struct {
			ID    int             `json:"id"`
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(firstLine(b), &reply); err != nil || reply.ID != id+1 || reply.Error != nil {
			return nil, fmt.Errorf("%s answered with %s", cmd, b)
		}
	}
	return &subscriber{conn: conn}, nil
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

// read takes publications until ctx ends; a message may hold several
// replies, one per line. An empty reply is the server's ping.
func (s *subscriber) read(ctx context.Context, each func()) {
	var push struct {
		Push *struct {
			Pub *struct {
				Data struct {
					N int64 `json:"n"`
					T int64 `json:"t"`
				} `json:"data"`
			} `json:"pub"`
		} `json:"push"`
	}
	for {
		_, b, err := s.conn.Read(ctx)
		if err != nil {
			return
		}
		at := time.Now()
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if string(line) == "{}" {
				_ = s.conn.Write(ctx, websocket.MessageText, []byte("{}"))
				continue
			}
			push.Push = nil
			if json.Unmarshal(line, &push) != nil || push.Push == nil || push.Push.Pub == nil {
				continue
			}
			d := push.Push.Pub.Data
			s.mu.Lock()
			if d.N < 0 || d.N >= int64(len(s.got)) || s.got[d.N] {
				s.dups++
				s.mu.Unlock()
				continue
			}
			s.got[d.N] = true
			s.lat = append(s.lat, at.Sub(time.Unix(0, d.T)))
			s.last = at
			s.mu.Unlock()
			each()
		}
	}
}

func publish(ctx context.Context, client *http.Client, c config, n int64, t time.Time, pad string) error {
	body := `{"channel":"` + c.channel + `","data":{"n":` + strconv.FormatInt(n, 10) + `,"t":` + strconv.FormatInt(t.UnixNano(), 10) + `,"p":"` + pad + `"}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.api+"/publish", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("publish %d: %s %s", n, resp.Status, b)
	}
	return nil
}

// procCPU is a process's user and system time from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ticks := 0.0
	for _, i := range []int{11, 12} { // utime, stime: fields 14 and 15
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return time.Duration(ticks / 100 * float64(time.Second)) // USER_HZ is 100 on Linux
}

func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	at := func(q float64) string {
		return fmt.Sprintf("%.2f ms", float64(d[min(int(q*float64(len(d))), len(d)-1)])/1e6)
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", at(0.5), at(0.9), at(0.99), at(1), len(d))
}
