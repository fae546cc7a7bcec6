// Package publish is the one path by which entries enter syncpoint: the
// business HTTP API, record uploads and the bench tool all call it, so the
// validation, the store append and the fan-out happen the same way for each.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// DefaultMaxTargets bounds the targets of one publish: past it, one request
// is enough work to stall the store for everyone, and a group reaches
// many users with one entry.
const DefaultMaxTargets = 1000

// Config is what a Publisher needs.
type Config struct {
	Store      syncpoint.Store
	Broker     syncpoint.Broker // may be nil: then nothing is fanned out
	Registry   *syncpoint.Registry
	Clock      clock.Clock           // nil: clock.Real{}
	Registerer prometheus.Registerer // nil: no metrics are registered
	// Logger reports fan-out failures of entries that were already stored
	// (the publish itself succeeded). nil: discard.
	Logger *slog.Logger
	// MaxTargets bounds the targets of one request, repeats included; 0
	// means DefaultMaxTargets.
	MaxTargets int
}

// Request is one publish: an entry for one or more targets of a biz.
type Request struct {
	Biz            string
	Targets        []syncpoint.Target
	Op             syncpoint.Op // "" means msg
	Key            string
	Data           json.RawMessage
	TTL            time.Duration // 0: the biz's retention; more than the retention is invalid
	Conditions     syncpoint.Conditions
	IdempotencyKey string
	Origin         string  // "" means syncpoint.OriginAPI
	IfKeySeq       *uint64 // passed to the store (record sync uses it)
	// ContentHash is passed to the store: what the idempotency key is
	// checked against instead of the entry (record sync uses it).
	ContentHash []byte
}

// Result is the outcome of a publish in one channel.
type Result struct {
	Channel   syncpoint.Channel
	Seq       uint64
	Epoch     string
	Duplicate bool
	// Ephemeral means the biz is not persistent: the entry went to online
	// devices only and was never stored (Seq 0).
	Ephemeral bool
	// Err is a per-channel failure such as syncpoint.ErrKeyChanged; the
	// other channels of the request are unaffected.
	Err error
	// KeySeq is the seq the key is really at when Err is ErrKeyChanged.
	KeySeq uint64
}

// Publisher validates publishes, appends them to the store and fans them out.
// It is safe for concurrent use.
type Publisher struct {
	store      syncpoint.Store
	broker     syncpoint.Broker
	registry   *syncpoint.Registry
	clock      clock.Clock
	logger     *slog.Logger
	metrics    *metrics // nil when no Registerer was given
	maxTargets int
}

// New returns a Publisher. It panics if the Registerer refuses its metrics,
// as that is a wiring mistake (two publishers on one registry).
func New(cfg Config) *Publisher {
	p := &Publisher{
		store:      cfg.Store,
		broker:     cfg.Broker,
		registry:   cfg.Registry,
		clock:      cfg.Clock,
		logger:     cfg.Logger,
		maxTargets: cfg.MaxTargets,
	}
	if p.maxTargets <= 0 {
		p.maxTargets = DefaultMaxTargets
	}
	if p.clock == nil {
		p.clock = clock.Real{}
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer != nil {
		p.metrics = newMetrics(cfg.Registerer)
	}
	return p
}

// Publish validates r and publishes it to each of its targets. A request
// that is wrong returns an *syncpoint.Error (CodeNotFound for an unknown biz,
// CodeTooLarge for an entry over the biz's limit, CodeInvalid otherwise);
// a store failure returns a wrapped error and nothing is published.
//
// A request whose idempotency key was already used in one of its channels
// for other content returns an *syncpoint.Error with
// CodeIdempotencyMismatch, whose Seq is the original entry's (the first
// such channel's). Nothing new is stored in that channel; in the request's
// other channels, whose key was unused, the entry is stored all the same,
// and a retry with the same content is a duplicate there.
func (p *Publisher) Publish(ctx context.Context, r Request) ([]Result, error) {
	results, errs, err := p.PublishBatch(ctx, []Request{r})
	if err != nil {
		return nil, err
	}
	if errs[0] != nil {
		return nil, errs[0]
	}
	return results[0], nil
}

// PublishBatch validates each request on its own; all valid ones go to the
// store in ONE Append call, so they share a group commit. Per-request errors
// come back in errs[i] (with results[i] nil); err is a failure of the whole
// call, after which nothing of it was stored.
func (p *Publisher) PublishBatch(ctx context.Context, rs []Request) (results [][]Result, errs []error, err error) {
	start := p.clock.Now()
	defer p.observe(start)

	results = make([][]Result, len(rs))
	errs = make([]error, len(rs))
	preps := make([]prepared, len(rs))
	nStored, nEphemeral := 0, 0
	for i := range rs {
		if err := p.prepare(&rs[i], start, &preps[i]); err != nil {
			errs[i] = err
			p.countError(preps[i].bizLabel, err)
			continue
		}
		if preps[i].biz.Persistent {
			nStored += len(preps[i].targets)
		} else {
			nEphemeral += len(preps[i].targets)
		}
	}

	// One entry per distinct target: stored ones go into the Append call,
	// the others straight to fan-out.
	appends := make([]syncpoint.AppendRequest, 0, nStored)
	var fanout []syncpoint.Entry
	if p.broker != nil {
		fanout = make([]syncpoint.Entry, 0, nStored+nEphemeral)
	}
	for i := range rs {
		pr := &preps[i]
		if errs[i] != nil || !pr.biz.Persistent {
			continue
		}
		pr.first = len(appends)
		policy := pr.biz.Policy()
		for _, t := range pr.targets {
			a := syncpoint.AppendRequest{Entry: pr.tmpl, Policy: policy, IfKeySeq: rs[i].IfKeySeq, ContentHash: rs[i].ContentHash}
			a.Entry.Channel.Target = t
			appends = append(appends, a)
		}
	}
	var appended []syncpoint.AppendResult
	if len(appends) > 0 {
		appended, err = p.store.Append(ctx, appends)
		if err == nil && len(appended) != len(appends) {
			err = fmt.Errorf("store returned %d results for %d entries", len(appended), len(appends))
		}
		if err != nil {
			p.countBatchFailure(errs, preps)
			return nil, nil, fmt.Errorf("publish: %w", err)
		}
	}

	// Results, and fan-out in request order: fresh appends with their seqs,
	// and the entries of non-persistent bizzes with seq 0.
	all := make([]Result, nStored+nEphemeral)
	for i := range rs {
		pr := &preps[i]
		if errs[i] != nil {
			continue
		}
		res := all[:len(pr.targets):len(pr.targets)]
		all = all[len(pr.targets):]
		for j, t := range pr.targets {
			res[j].Channel = syncpoint.Channel{Biz: pr.tmpl.Channel.Biz, Target: t}
			if !pr.biz.Persistent {
				res[j].Ephemeral = true
				if fanout != nil {
					e := pr.tmpl
					e.Channel.Target = t
					fanout = append(fanout, e)
				}
				continue
			}
			a := &appended[pr.first+j]
			res[j].Seq, res[j].Epoch, res[j].Duplicate, res[j].Err, res[j].KeySeq = a.Seq, a.Epoch, a.Duplicate, a.Err, a.KeySeq
			if a.Err == nil && !a.Duplicate && fanout != nil {
				e := appends[pr.first+j].Entry
				e.Seq, e.Epoch = a.Seq, a.Epoch
				fanout = append(fanout, e)
			}
		}
		results[i] = res
	}

	if len(fanout) > 0 {
		if ferr := p.broker.Publish(ctx, fanout); ferr != nil {
			// Stored entries are durable and reach devices from the log on
			// their next sync; ephemeral ones are lost, so say so.
			p.logger.Error("publish: fan-out failed", "entries", len(fanout), "err", ferr)
			for i := range rs {
				if errs[i] == nil && !preps[i].biz.Persistent {
					results[i] = nil
					errs[i] = syncpoint.Errorf(syncpoint.CodeUnavailable, "biz %s is not persistent and its entry could not be delivered; retry", preps[i].biz.Name)
					p.countError(preps[i].bizLabel, errs[i])
				}
			}
		}
	}
	p.countResults(results, preps)
	for i := range results {
		if err := mismatch(&rs[i], results[i]); err != nil {
			results[i], errs[i] = nil, err
		}
	}
	return results, errs, nil
}

// mismatch is the error of a request whose idempotency key named other
// content in one of its channels, or nil.
func mismatch(r *Request, res []Result) error {
	for _, c := range res {
		if errors.Is(c.Err, syncpoint.ErrIdempotencyMismatch) {
			e := syncpoint.Errorf(syncpoint.CodeIdempotencyMismatch,
				"idempotency key %q was already used in %s for an entry with other content, seq %d; nothing new was stored there (send new content under a new key)",
				r.IdempotencyKey, c.Channel, c.Seq)
			e.Seq = c.Seq
			return e
		}
	}
	return nil
}

// prepared is a validated request: its biz, its distinct targets, and the
// entry every target gets (with the first target in its channel).
type prepared struct {
	biz      syncpoint.Biz
	bizLabel string // the biz name once it is known to exist, for metrics
	targets  []syncpoint.Target
	tmpl     syncpoint.Entry
	first    int // index of the first target's entry in the Append call
}

// maxTargetsScan is how many targets are deduplicated by a linear scan
// before a map pays for itself.
const maxTargetsScan = 16

func (p *Publisher) prepare(r *Request, now time.Time, out *prepared) error {
	biz, err := p.registry.Lookup(r.Biz)
	if err != nil {
		return err
	}
	out.biz = biz
	out.bizLabel = biz.Name
	if len(r.Targets) == 0 {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "no target: give at least one %s", targetNoun(biz.Target))
	}
	if len(r.Targets) > p.maxTargets {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "%d targets; a publish takes at most %d: split it, or publish to a group", len(r.Targets), p.maxTargets)
	}
	op := r.Op
	if op == "" {
		op = syncpoint.OpMsg
	}
	retention := time.Duration(biz.Retention)
	ttl := r.TTL
	switch {
	case ttl < 0:
		return syncpoint.Errorf(syncpoint.CodeInvalid, "ttl %s is negative", ttl)
	case ttl == 0:
		ttl = retention
	case ttl > retention:
		return syncpoint.Errorf(syncpoint.CodeInvalid, "ttl %s is longer than biz %s's retention of %s", ttl, biz.Name, retention)
	}
	if r.IfKeySeq != nil && !biz.Persistent {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "biz %s is not persistent, so a conditional write has nothing to check", biz.Name)
	}
	origin := r.Origin
	if origin == "" {
		origin = syncpoint.OriginAPI
	}
	for _, t := range r.Targets {
		if t.Kind != biz.Target {
			return syncpoint.Errorf(syncpoint.CodeInvalid, "biz %s takes %s targets, not %s (target %q)", biz.Name, biz.Target, t.Kind, t.String())
		}
		if err := t.Validate(); err != nil {
			return err
		}
	}
	out.targets = dedupe(r.Targets)
	out.tmpl = syncpoint.Entry{
		Channel:        syncpoint.Channel{Biz: biz.Name, Target: out.targets[0]},
		Op:             op,
		Key:            r.Key,
		Data:           r.Data,
		CreatedAt:      now,
		ExpiresAt:      now.Add(ttl),
		Conditions:     r.Conditions,
		Origin:         origin,
		IdempotencyKey: r.IdempotencyKey,
	}
	// The entries differ only in their (already checked) target, so one
	// validation covers them all.
	return out.tmpl.Validate(biz.EntryLimit())
}

// dedupe returns ts without repeats, in first-seen order; ts itself when it
// has none, which is the common case.
func dedupe(ts []syncpoint.Target) []syncpoint.Target {
	if len(ts) > maxTargetsScan {
		seen := make(map[syncpoint.Target]struct{}, len(ts))
		out := make([]syncpoint.Target, 0, len(ts))
		for _, t := range ts {
			if _, dup := seen[t]; !dup {
				seen[t] = struct{}{}
				out = append(out, t)
			}
		}
		return out
	}
	for i := 1; i < len(ts); i++ {
		if slices.Contains(ts[:i], ts[i]) {
			out := slices.Clone(ts[:i])
			for _, t := range ts[i+1:] {
				if !slices.Contains(out, t) {
					out = append(out, t)
				}
			}
			return out
		}
	}
	return ts
}

func targetNoun(k syncpoint.TargetKind) string {
	if k == syncpoint.TargetGlobal {
		return "global target"
	}
	return string(k) + " target"
}
