package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/postgres"
)

// Defaults for the cluster's background work.
const (
	// DefaultHeadCheckInterval is how often a node of a cluster compares
	// the heads of the channels its devices read with the store, which
	// bounds how late an entry whose broker message was lost arrives.
	DefaultHeadCheckInterval = time.Second
	// presenceBeat is how often a node tells the directory which sessions
	// it holds; a third of the grace, so two missed beats are survived.
	presenceBeat = syncpoint.DefaultPresenceGrace / 3
	// bizRefresh re-reads the bizzes now and then, in case an EventBiz was
	// lost.
	bizRefresh = 30 * time.Second
)

// defaultNodeID names a node that was given no id: the host name and a
// random suffix, so two processes on one machine differ.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// clustered reports whether other nodes may share the store: a broker
// other than the in-process one carries the fan-out.
func (s *Server) clustered() bool {
	_, single := s.broker.(*local.Broker)
	return !single
}

// setUpCluster picks the directory and leases and registers the node's
// info metric. One node needs no directory (its hub knows every session)
// and runs every job itself.
func (s *Server) setUpCluster() {
	s.leases = local.Leases{}
	if pg, ok := s.store.(*postgres.Store); ok && s.clustered() {
		s.directory, s.leases = pg.Directory(), pg.Leases()
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "syncpoint_node_info",
		Help:        "Always 1; its node label is this node's id, as in its log lines.",
		ConstLabels: prometheus.Labels{"node": s.cfg.NodeID},
	})
	info.Set(1)
	s.metrics.MustRegister(info)
}

// handleEvent is the broker's Listen callback: the hub acts on presence,
// and the server on what other nodes changed. It must not block.
func (s *Server) handleEvent(ev syncpoint.Event) {
	s.hub.HandleEvent(ev)
	if ev.Kind == syncpoint.EventLost {
		s.logger.Warn("broker: messages may have been lost; checking channel heads against the store")
		s.kickHeadCheck()
		return
	}
	if ev.Node == s.cfg.NodeID {
		return
	}
	switch ev.Kind {
	case syncpoint.EventReset:
		s.hub.ResetChannel(ev.Channel)
	case syncpoint.EventRevoke:
		s.opaque.Forget(ev.TokenID)
		s.feed.Revoke(ev.TokenID)
	case syncpoint.EventBiz:
		s.kickBizRefresh()
	}
}

// announce tells every node of a change made here; a failure is logged:
// the periodic checks repair what a lost event missed.
func (s *Server) announce(ev syncpoint.Event) {
	ev.Node = s.cfg.NodeID
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.broker.Announce(ctx, ev); err != nil {
		s.logger.Warn("broker: announce", "kind", string(ev.Kind), "err", err)
	}
}

// resetChannel is a reset made through this node's API.
func (s *Server) resetChannel(ch syncpoint.Channel) {
	s.hub.ResetChannel(ch)
	s.announce(syncpoint.Event{Kind: syncpoint.EventReset, Channel: ch})
}

func (s *Server) kickHeadCheck() {
	select {
	case s.headCheck <- struct{}{}:
	default:
	}
}

func (s *Server) kickBizRefresh() {
	select {
	case s.bizCheck <- struct{}{}:
	default:
	}
}

// clusterLoop runs a clustered node's repairs until ctx ends: channel heads
// against the store every HeadCheckInterval (and at once after an
// EventLost), the bizzes after an EventBiz and every bizRefresh, and the
// directory's beat.
func (s *Server) clusterLoop(ctx context.Context) error {
	if !s.clustered() {
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	heads := newHeadChecker(s)
	wg.Go(func() { every(ctx, s.cfg.HeadCheckInterval, s.headCheck, heads.check) })
	wg.Go(func() {
		every(ctx, bizRefresh, s.bizCheck, func(ctx context.Context) {
			if err := s.registry.Refresh(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("cluster: refresh bizzes", "err", err)
			}
		})
	})
	t := time.NewTicker(presenceBeat)
	defer t.Stop()
	for {
		if err := s.directory.Beat(ctx, s.cfg.NodeID, s.hub.Presences()); err != nil && ctx.Err() == nil {
			s.logger.Warn("cluster: directory beat", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// headChecker finds entries whose broker message this node never got: it
// reads the heads of the channels that devices here read, and has the hub
// and the feed read on where a head moved since the last look.
type headChecker struct {
	s    *Server
	last map[syncpoint.Channel]syncpoint.ChannelInfo
}

func newHeadChecker(s *Server) *headChecker {
	return &headChecker{s: s, last: make(map[syncpoint.Channel]syncpoint.ChannelInfo)}
}

func (c *headChecker) check(ctx context.Context) {
	chans := append(c.s.hub.Channels(), c.s.feed.Watched()...)
	if len(chans) == 0 {
		clear(c.last)
		return
	}
	infos, err := c.heads(ctx, chans)
	if err != nil {
		if ctx.Err() == nil {
			c.s.logger.Warn("cluster: read channel heads", "channels", len(chans), "err", err)
		}
		return
	}
	seen := make(map[syncpoint.Channel]bool, len(infos))
	for _, info := range infos {
		seen[info.Channel] = true
		if old, ok := c.last[info.Channel]; ok && old == info {
			continue
		}
		c.last[info.Channel] = info
		c.s.hub.Nudge(info)
		c.s.feed.ChannelChanged(info.Channel)
	}
	for ch := range c.last {
		if !seen[ch] {
			delete(c.last, ch)
		}
	}
}

func (c *headChecker) heads(ctx context.Context, chans []syncpoint.Channel) ([]syncpoint.ChannelInfo, error) {
	if hr, ok := c.s.store.(syncpoint.HeadReader); ok {
		return hr.Heads(ctx, chans)
	}
	out := make([]syncpoint.ChannelInfo, 0, len(chans))
	for _, ch := range chans {
		info, err := c.s.store.Channel(ctx, ch)
		if err != nil {
			return nil, err
		}
		info.Channel = ch
		out = append(out, info)
	}
	return out, nil
}

// every calls fn each interval, and at once when wake fires (nil: never),
// until ctx ends.
func every(ctx context.Context, interval time.Duration, wake <-chan struct{}, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn(ctx)
	}
}
