package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/publish"
)

// BenchmarkHTTPPublish measures single-entry publishes over HTTP: a real
// server on 127.0.0.1:0 over a pebble store, 64 keep-alive clients, each
// publish to one of 10,000 user channels.
func BenchmarkHTTPPublish(b *testing.B) {
	const clients = 64
	store := MustOpenStore(b, nil)
	reg := syncpoint.NewRegistry(store)
	if err := reg.Load(context.Background(), testBizzes()); err != nil {
		b.Fatal(err)
	}
	broker := local.New()
	b.Cleanup(func() { broker.Close() })
	api := New(Config{
		Publisher: publish.New(publish.Config{Store: store, Broker: broker, Registry: reg}),
		Store:     store,
		Registry:  reg,
		APIKey:    testKey,
	})
	mux := http.NewServeMux()
	api.Register(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })

	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String() + "/v1/publish"
	bodies := make([][]byte, 10000)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"biz":"chat","users":["u%d"],"data":{"text":"hello, world"}}`, i)
	}
	auth := []string{"Bearer " + testKey}
	ctype := []string{"application/json"}

	var next atomic.Int64
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := bodies[next.Add(1)%int64(len(bodies))]
			req, err := http.NewRequest("POST", url, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header["Authorization"] = auth
			req.Header["Content-Type"] = ctype
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
	// CPU time per publish (server, store and the clients together) says
	// what the machine could do when other processes share it.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/publish")
}

// BenchmarkPublishHandler measures the API's own share of a publish: the
// handler over a real store, without sockets or net/http's connection work.
func BenchmarkPublishHandler(b *testing.B) {
	store := MustOpenStore(b, nil)
	reg := syncpoint.NewRegistry(store)
	if err := reg.Load(context.Background(), testBizzes()); err != nil {
		b.Fatal(err)
	}
	api := New(Config{
		Publisher: publish.New(publish.Config{Store: store, Registry: reg}),
		Store:     store,
		Registry:  reg,
		APIKey:    testKey,
	})
	mux := http.NewServeMux()
	api.Register(mux)
	body := []byte(`{"biz":"chat","users":["u1"],"data":{"text":"hello, world"}}`)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/publish", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			_ = next.Add(1)
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
}

// BenchmarkDecodePublish measures the strict decoding of a typical body.
func BenchmarkDecodePublish(b *testing.B) {
	body := []byte(`{"biz":"chat","users":["u1"],"data":{"text":"hello, world"},"idempotency_key":"k-123"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodePublish(body); err != nil {
			b.Fatal(err)
		}
	}
}
