package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// The transports and encodings a device can use.
const (
	TransportWS   = "ws"
	TransportTCP  = "tcp"
	EncodingJSON  = "json"
	EncodingProto = "proto"
)

// Defaults for Target.
const (
	DefaultConnectConcurrency = 128
	DefaultTimeout            = 10 * time.Second
	// DefaultTokenTTL outlives any run; tokens are minted once per device.
	DefaultTokenTTL = 24 * time.Hour
)

// Target is the server under test, or the nodes of a cluster, and how the
// devices reach them. Every scenario's Config embeds it.
//
// With several servers, device i connects to Servers[i mod N] and publish
// requests go round robin over the servers (the package doc says what each
// scenario counts as one); CrossNode keeps the two apart instead.
type Target struct {
	// Server is the HTTP base URL, e.g. http://127.0.0.1:7420: the only
	// server, or the first of Servers. One of the two is required.
	Server string
	// Servers are the HTTP base URLs of several nodes of one cluster, which
	// share one API key and token secret. Empty means Server alone; when
	// both are set, Server must be Servers[0].
	Servers []string
	// TCP is host:port of the raw TCP listener of Server; needed by
	// TransportTCP.
	TCP string
	// TCPs are the raw TCP listeners of Servers, in the same order. Empty
	// means TCP alone; when both are set, TCP must be TCPs[0].
	TCPs []string
	// CrossNode connects every device to Servers[1:] and sends every
	// publish to Servers[0], so that each delivery crosses from one node to
	// another. It needs at least two servers.
	CrossNode bool
	// APIKey authorizes the business API (publishes, biz setup).
	APIKey string
	// TokenSecret signs the device tokens (HS256), one per device.
	TokenSecret string
	// Transport is TransportWS (the default) or TransportTCP.
	Transport string
	// Encoding is EncodingJSON or EncodingProto; "" means JSON on
	// WebSocket. TCP speaks only protobuf.
	Encoding string
	// Biz is the biz to use; "" means the scenario's own (DefaultBiz,
	// DefaultGlobalBiz or DefaultRecordsBiz).
	Biz string
	// CreateBiz creates Biz through PUT /v1/bizzes when it does not exist.
	// An existing biz is used as it is, and must have the kind the scenario
	// needs.
	CreateBiz bool
	// SourceIPs, when set, are the local addresses connections are spread
	// over, so more than one address's worth of ephemeral ports can be
	// used over loopback.
	SourceIPs []netip.Addr
	// RunID tells this run's users and devices apart from earlier runs';
	// "" picks a random one.
	RunID string
	// ConnectConcurrency bounds handshakes in flight.
	ConnectConcurrency int
	// Timeout bounds one request, one handshake and one wait for an
	// answer (a write result, a fanout entry).
	Timeout time.Duration
	// AckInterval, when positive, has each socket device ack at most once
	// per interval, with the latest position of each channel, instead of
	// acking every push; the protocol allows either.
	AckInterval time.Duration
	// Progress, when set, gets a progress line every second, rewritten in
	// place with a carriage return; give it a terminal.
	Progress io.Writer
	Clock    clock.Clock // nil: clock.Real{}
}

func (t *Target) setDefaults() {
	if t.Transport == "" {
		t.Transport = TransportWS
	}
	if t.Encoding == "" {
		t.Encoding = EncodingJSON
		if t.Transport == TransportTCP {
			t.Encoding = EncodingProto
		}
	}
	if t.ConnectConcurrency <= 0 {
		t.ConnectConcurrency = DefaultConnectConcurrency
	}
	if t.Timeout <= 0 {
		t.Timeout = DefaultTimeout
	}
	if t.Clock == nil {
		t.Clock = clock.Real{}
	}
}

// runner is one scenario's view of the target: clients, time origin and
// error counts.
type runner struct {
	t       Target
	clock   clock.Clock
	base    time.Time           // the time origin of the stamps carried in entries
	prefix  string              // "bench-<run>-", for user and device ids
	api     *http.Client        // the business API's connections, shared by clients
	clients []*apiclient.Client // the business API of each server, as t.Servers
	place   placement
	dialWS  *http.Client
	nextIP  atomic.Uint64
	errs    *errCounter
	downs   atomic.Int64 // devices whose connection failed
}

// startRunner is newRunner followed by ensureBiz, the start of every
// scenario; scenario names the errors.
func startRunner(ctx context.Context, scenario string, t Target, needDevices bool, want syncpoint.Biz) (*runner, error) {
	r, err := newRunner(t, needDevices)
	if err != nil {
		return nil, err
	}
	if err := r.ensureBiz(ctx, want); err != nil {
		r.close()
		return nil, fmt.Errorf("%s: %w", scenario, err)
	}
	return r, nil
}

// newRunner checks t and builds the clients; needDevices asks for a token
// secret as well as an API key.
func newRunner(t Target, needDevices bool) (*runner, error) {
	t.setDefaults()
	if err := t.checkServers(needDevices); err != nil {
		return nil, err
	}
	if t.APIKey == "" {
		return nil, errors.New("bench: no API key")
	}
	switch t.Transport {
	case TransportWS:
		if t.Encoding != EncodingJSON && t.Encoding != EncodingProto {
			return nil, fmt.Errorf("bench: encoding %q: want json or proto", t.Encoding)
		}
	case TransportTCP:
		if t.Encoding != EncodingProto {
			return nil, fmt.Errorf("bench: encoding %q: TCP speaks only proto", t.Encoding)
		}
	default:
		return nil, fmt.Errorf("bench: transport %q: want ws or tcp", t.Transport)
	}
	if needDevices && len(t.TokenSecret) < auth.MinSecretBytes {
		return nil, fmt.Errorf("bench: the token secret must be at least %d bytes", auth.MinSecretBytes)
	}
	if t.RunID == "" {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("bench: run id: %w", err)
		}
		t.RunID = hex.EncodeToString(b)
	}
	if err := syncpoint.ValidateID("run id", t.RunID); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r := &runner{t: t, clock: t.Clock, prefix: "bench-" + t.RunID + "-", errs: newErrCounter(),
		place: placement{servers: len(t.Servers), cross: t.CrossNode}}
	r.base = r.clock.Now()
	r.api = &http.Client{Transport: &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}, Timeout: t.Timeout}
	for _, s := range t.Servers {
		r.clients = append(r.clients, &apiclient.Client{BaseURL: s, APIKey: t.APIKey, HTTP: r.api})
	}
	// WebSocket handshakes get their own transport, dialing from the
	// source addresses; the upgraded connections leave its pool.
	r.dialWS = &http.Client{Transport: &http.Transport{
		DialContext:        r.dialContext,
		DisableCompression: true,
	}}
	return r, nil
}

// checkServers checks and normalizes the server list, leaving Servers
// complete and Server its first (and likewise TCPs and TCP).
func (t *Target) checkServers(needDevices bool) error {
	if len(t.Servers) == 0 {
		if t.Server == "" {
			return errors.New("bench: no server")
		}
		t.Servers = []string{t.Server}
	}
	list := make([]string, len(t.Servers))
	for i, s := range t.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("bench: server %q: want an http:// or https:// URL", s)
		}
		list[i] = strings.TrimRight(u.String(), "/")
	}
	if t.Server != "" && strings.TrimRight(t.Server, "/") != list[0] {
		return fmt.Errorf("bench: server %q is not the first of the servers (%s)", t.Server, list[0])
	}
	t.Servers, t.Server = list, list[0]
	if len(t.TCPs) == 0 && t.TCP != "" {
		t.TCPs = []string{t.TCP}
	}
	if len(t.TCPs) > 0 {
		if t.TCP != "" && t.TCP != t.TCPs[0] {
			return fmt.Errorf("bench: TCP address %q is not the first of the TCP addresses (%s)", t.TCP, t.TCPs[0])
		}
		t.TCP = t.TCPs[0]
	}
	if t.CrossNode && len(t.Servers) < 2 {
		return errors.New("bench: cross-node needs at least two servers")
	}
	if needDevices && t.Transport == TransportTCP {
		switch {
		case len(t.TCPs) == 0:
			return errors.New("bench: no TCP address for the tcp transport")
		case len(t.TCPs) != len(t.Servers):
			return fmt.Errorf("bench: %d servers but %d TCP addresses; give one for each server", len(t.Servers), len(t.TCPs))
		}
	}
	return nil
}

// placement says which server each device and each publish request uses,
// as indexes into Target.Servers.
type placement struct {
	servers int
	cross   bool // devices on servers 1..N-1, publishes on server 0
}

// device is the server of device i: i mod N, or with cross
// 1 + i mod (N-1), which is never the publishing server.
func (p placement) device(i int) int {
	if p.cross {
		return 1 + i%(p.servers-1)
	}
	return i % p.servers
}

// publish is the server of publish request k: k mod N, or with cross
// always server 0.
func (p placement) publish(k int64) int {
	if p.cross {
		return 0
	}
	return int(k % int64(p.servers))
}

// deviceServer is the HTTP base URL device i connects to.
func (r *runner) deviceServer(i int) string { return r.t.Servers[r.place.device(i)] }

// deviceTCP is the raw TCP address device i connects to.
func (r *runner) deviceTCP(i int) string { return r.t.TCPs[r.place.device(i)] }

// publisher is the business API client of publish request k.
func (r *runner) publisher(k int64) *apiclient.Client { return r.clients[r.place.publish(k)] }

// now is the time since the run's origin, as carried in entry stamps.
func (r *runner) now() time.Duration { return r.clock.Now().Sub(r.base) }

// dialContext dials from the next source address, round robin.
func (r *runner) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: r.t.Timeout, KeepAlive: 30 * time.Second}
	if n := len(r.t.SourceIPs); n > 0 {
		ip := r.t.SourceIPs[(r.nextIP.Add(1)-1)%uint64(n)]
		d.LocalAddr = &net.TCPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	}
	return d.DialContext(ctx, network, addr)
}

// userID and deviceID name this run's users and devices.
func (r *runner) userID(name string) string   { return r.prefix + "u" + name }
func (r *runner) deviceID(name string) string { return r.prefix + "d" + name }

// token mints a device token for user.
func (r *runner) token(user string) (string, error) {
	now := r.clock.Now()
	tok, err := auth.Mint([]byte(r.t.TokenSecret), auth.Claims{User: user, ExpiresAt: now.Add(DefaultTokenTTL)}, now)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return tok, nil
}

// ensureBiz makes sure the biz the scenario uses exists with want's kind
// on every server: it is created from want where it is missing and
// CreateBiz is set, so a node that has not heard of it yet from the others
// serves it too; an existing biz is used as it is, never changed.
func (r *runner) ensureBiz(ctx context.Context, want syncpoint.Biz) error {
	seen := make(map[string]bool)
	for i, c := range r.clients {
		if seen[c.BaseURL] {
			continue
		}
		seen[c.BaseURL] = true
		if err := r.ensureBizOn(ctx, c, want); err != nil {
			if len(r.clients) > 1 {
				return fmt.Errorf("server %d (%s): %w", i+1, c.BaseURL, err)
			}
			return err
		}
	}
	return nil
}

func (r *runner) ensureBizOn(ctx context.Context, c *apiclient.Client, want syncpoint.Biz) error {
	path := "/v1/bizzes/" + url.PathEscape(want.Name)
	var have syncpoint.Biz
	err := c.Call(ctx, http.MethodGet, path, nil, &have)
	var se *apiclient.StatusError
	switch {
	case err == nil:
		return checkBiz(have, want)
	case errors.As(err, &se) && se.Status == http.StatusNotFound && r.t.CreateBiz:
		if err := c.Call(ctx, http.MethodPut, path, want, nil); err != nil {
			return fmt.Errorf("create biz %s: %w", want.Name, err)
		}
		return nil
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return fmt.Errorf("biz %s does not exist; create it, or let the bench create it", want.Name)
	}
	return fmt.Errorf("get biz %s: %w", want.Name, err)
}

// checkBiz refuses a biz the scenario cannot measure with.
func checkBiz(have, want syncpoint.Biz) error {
	switch {
	case have.Target != want.Target:
		return fmt.Errorf("biz %s has target %s; this scenario needs a %s biz", have.Name, have.Target, want.Target)
	case !have.Persistent:
		return fmt.Errorf("biz %s is not persistent; its entries have no seqs to check", have.Name)
	case want.Writable && !have.Writable:
		return fmt.Errorf("biz %s is not writable", have.Name)
	case have.Target == syncpoint.TargetUser && !have.MultiDevice:
		return fmt.Errorf("biz %s has multi_device: false", have.Name)
	case have.MaxBacklog != 0 || have.Compact:
		return fmt.Errorf("biz %s trims or compacts its channels; entries would be skipped", have.Name)
	}
	return nil
}

// channelHead returns where a channel stands now, so devices can start
// after entries of earlier runs; the first server is asked, as every node
// of a cluster reads the same store.
func (r *runner) channelHead(ctx context.Context, ch syncpoint.Channel) (syncpoint.Position, error) {
	path := "/v1/channels/" + url.PathEscape(ch.Biz) + "/" + url.PathEscape(ch.Target.String()) + "?limit=1"
	var info syncpoint.ChannelInfo
	if err := r.clients[0].Call(ctx, http.MethodGet, path, nil, &info); err != nil {
		return syncpoint.Position{}, fmt.Errorf("read channel %s: %w", ch, err)
	}
	return syncpoint.Position{Epoch: info.Epoch, Seq: info.LastSeq}, nil
}

// publish sends publish request k, to one channel, and returns its entry;
// an answer without exactly one published entry is an error.
func (r *runner) publish(ctx context.Context, k int64, body []byte) ([]apiclient.PublishedEntry, error) {
	resp, err := r.publisher(k).PublishJSON(ctx, body)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := checkResult(apiclient.BatchResult{Entries: resp.Entries}); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	return resp.Entries, nil
}

// checkResult returns the error of a one-channel publish result, or nil
// when it published.
func checkResult(it apiclient.BatchResult) error {
	switch {
	case it.Error != nil:
		return it.Error
	case len(it.Entries) != 1:
		return fmt.Errorf("%d channels in the answer; want 1", len(it.Entries))
	case it.Entries[0].Error != nil:
		return fmt.Errorf("%s: %w", it.Entries[0].Channel, it.Entries[0].Error)
	case it.Entries[0].Seq == 0:
		return fmt.Errorf("%s: seq 0: the biz is not persistent", it.Entries[0].Channel)
	}
	return nil
}

// publishBatch sends batch request k, of n items, and returns one result
// per item.
func (r *runner) publishBatch(ctx context.Context, k int64, body []byte, n int) ([]apiclient.BatchResult, error) {
	resp, err := r.publisher(k).PublishBatchJSON(ctx, body, n)
	if err != nil {
		return nil, fmt.Errorf("publish batch: %w", err)
	}
	return resp.Results, nil
}

// close releases idle API connections.
func (r *runner) close() {
	r.api.CloseIdleConnections()
	r.dialWS.CloseIdleConnections()
}
