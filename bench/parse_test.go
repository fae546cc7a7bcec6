package bench

import (
	"encoding/json"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

func TestParseSourceIPs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // the addresses joined by spaces
		err  string
	}{
		{in: "", want: ""},
		{in: "127.0.0.2", want: "127.0.0.2"},
		{in: "127.0.0.2-127.0.0.4", want: "127.0.0.2 127.0.0.3 127.0.0.4"},
		{in: " 127.0.0.2 - 127.0.0.3 , 10.0.0.1 ,", want: "127.0.0.2 127.0.0.3 10.0.0.1"},
		{in: "127.0.0.255-127.0.1.1", want: "127.0.0.255 127.0.1.0 127.0.1.1"},
		{in: "::1", want: "::1"},
		{in: "fd00::1-fd00::3", want: "fd00::1 fd00::2 fd00::3"},
		{in: "127.0.0.5-127.0.0.5", want: "127.0.0.5"},
		{in: "127.0.0.9-127.0.0.2", err: "ends before it starts"},
		{in: "127.0.0.1-::1", err: "mixes address families"},
		{in: "localhost", err: "not an IP address"},
		{in: "127.0.0.1-", err: "not an IP address"},
		{in: "127.0.0.1-127.0.0.2-127.0.0.3", err: "not an IP address"},
		{in: "10.0.0.0-10.1.0.0", err: "more than 4096"},
	} {
		got, err := ParseSourceIPs(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || syncpoint.Code(err) != syncpoint.CodeInvalid {
				t.Errorf("ParseSourceIPs(%q) = %v, %v; want an invalid error mentioning %q", tc.in, got, err, tc.err)
			}
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if err != nil || strings.Join(s, " ") != tc.want {
			t.Errorf("ParseSourceIPs(%q) = %q, %v; want %q", tc.in, s, err, tc.want)
		}
	}
}

// Connections go out from the source addresses in turn.
func TestDialFromSourceIPs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux routes all of 127.0.0.0/8 to loopback by default")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			seen <- host
			c.Close()
		}
	}()
	ips, _ := ParseSourceIPs("127.0.0.2-127.0.0.3")
	r, err := newRunner(Target{Server: "http://" + ln.Addr().String(), APIKey: "k", SourceIPs: ips}, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		c, err := r.dialContext(t.Context(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		select {
		case h := <-seen:
			got = append(got, h)
		case <-time.After(5 * time.Second):
			t.Fatal("no connection accepted")
		}
	}
	if strings.Join(got, " ") != "127.0.0.2 127.0.0.3 127.0.0.2 127.0.0.3" {
		t.Fatalf("connections came from %v", got)
	}
}

func TestStamp(t *testing.T) {
	for _, size := range []int{0, 10, 30, 31, 32, 33, 100, 1000} {
		b := appendStamp([]byte("x"), 123456789, 42, size)[1:]
		if !json.Valid(b) {
			t.Fatalf("size %d: %s is not JSON", size, b)
		}
		if size > 40 && len(b) != size {
			t.Errorf("size %d: %d bytes: %s", size, len(b), b)
		}
		tv, k, ok := parseStamp(b)
		if !ok || tv != 123456789 || k != 42 {
			t.Errorf("size %d: parseStamp(%s) = %d, %d, %v", size, b, tv, k, ok)
		}
	}
	for _, tc := range []struct {
		in string
		ok bool
		t  int64
		k  uint64
	}{
		{`{"t":-5,"k":0}`, true, -5, 0},
		{`{ "k": 7, "t": 9, "p": "x" }`, true, 9, 7},
		{`{"t":1}`, false, 0, 0},
		{`{"t":1,"k":-1}`, false, 0, 0},
		{`{"t":1,"k":2`, false, 0, 0},
		{`{"t":99999999999999999999,"k":1}`, false, 0, 0},
		{`"hi"`, false, 0, 0},
		{``, false, 0, 0},
	} {
		tv, k, ok := parseStamp([]byte(tc.in))
		if ok != tc.ok || tv != tc.t || k != tc.k {
			t.Errorf("parseStamp(%s) = %d, %d, %v; want %d, %d, %v", tc.in, tv, k, ok, tc.t, tc.k, tc.ok)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
go_memstats_heap_inuse_bytes 1.2345e+07
process_resident_memory_bytes 3.3e+07 1700000000000
http_requests_total{code="200"} 17
syncpoint_sessions 0
bad line here
9starts_with_digit 1
nan_metric NaN
`
	m := parseMetrics([]byte(in))
	want := map[string]float64{"go_goroutines": 42, "go_memstats_heap_inuse_bytes": 12345000, "process_resident_memory_bytes": 3.3e7, "syncpoint_sessions": 0}
	if len(m) != len(want) {
		t.Fatalf("parsed %v; want %v", m, want)
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v, %v; want %v", k, got, ok, v)
		}
	}
}

func FuzzParseSourceIPs(f *testing.F) {
	for _, s := range []string{"", "127.0.0.2-127.0.0.20", "::1,fd00::1-fd00::9", "1.2.3.4-1.2.3.3", "a-b", "127.0.0.1-::1", "fe80::1%lo-fe80::2%lo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ips, err := ParseSourceIPs(s)
		if err != nil {
			if syncpoint.Code(err) != syncpoint.CodeInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
			return
		}
		if len(ips) > MaxSourceIPs {
			t.Fatalf("%d addresses", len(ips))
		}
		for _, a := range ips {
			if !a.IsValid() {
				t.Fatalf("invalid address in %v", ips)
			}
		}
	})
}

func FuzzParseStamp(f *testing.F) {
	f.Add([]byte(`{"t":123,"k":4,"p":"xx"}`))
	f.Add([]byte(`{"t":-1,"k":0}`))
	f.Add([]byte(`{"k":1,"t":2}`))
	f.Add([]byte(`{"t":1e3,"k":1}`))
	f.Add([]byte(`{"t":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tv, k, ok := parseStamp(b)
		if !ok {
			return
		}
		// What parses must survive a round trip through appendStamp.
		t2, k2, ok2 := parseStamp(appendStamp(nil, tv, k, 0))
		if !ok2 || t2 != tv || k2 != k {
			t.Fatalf("round trip of %d, %d gave %d, %d, %v", tv, k, t2, k2, ok2)
		}
	})
}

func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte("go_goroutines 42\n# HELP x y\nprocess_resident_memory_bytes 1e6 17\n"))
	f.Add([]byte("a{b=\"c\"} 1\nname +Inf\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k := range parseMetrics(b) {
			if !metricName(k) {
				t.Fatalf("kept %q, which is not a metric name", k)
			}
		}
	})
}

func BenchmarkParseStamp(b *testing.B) {
	data := appendStamp(nil, 1234567890123, 987654, 128)
	for b.Loop() {
		if _, _, ok := parseStamp(data); !ok {
			b.Fatal("no stamp")
		}
	}
}

func BenchmarkRecorder(b *testing.B) {
	r := newRecorder()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.record(i, time.Duration(i%5000)*time.Microsecond)
			i++
		}
	})
}
