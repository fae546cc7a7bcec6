// Package feed is what every surface a device syncs through asks: what does
// this device get next, and what has it confirmed. Socket sessions (hub),
// Server-Sent Events (sse) and the HTTP forms (httpsync) all read through
// it, so authorization, channel status, conditions, expiry, merged pages
// and sync points follow one set of rules everywhere.
//
// # Opening a feed for a device
//
// A surface verifies the device's token itself and hands the claims to
// Open, with the device id and what the device says about itself:
//
//	s, statuses, err := f.Open(ctx, feed.Request{
//		Claims:     claims,            // from the token verifier
//		DeviceID:   "d1",              // bound to claims.User on first use
//		Platform:   "web", AppVersion: "2.3.0",
//		Bizzes:     []string{"chat", "config"}, // or AllBizzes: true
//		Positions:  given,             // what the device holds, if it says
//		FromStored: true,              // else start from its stored sync points
//		Watch:      true,              // it will Wait for new entries
//	})
//	defer s.Close()
//
// Open applies the socket hello's rules: the device id must be valid and
// not registered to another user (CodeForbidden); each biz must exist
// (CodeForbidden, naming it) and is expanded into the channels the claims
// read (Identity.Channels: the user's, the device's, global, granted
// groups); a non-persistent biz is live only. It stores the device with
// its last-seen time. Errors are *syncpoint.Error values whose code goes
// through the one table to an HTTP status or close code.
//
// Each Status says, per channel, ok, reset or gap (ChannelInfo.Check of the
// starting position), with the channel's info and the seq delivery resumes
// after. A starting position that is ok counts as the device's
// confirmation and becomes its sync point, as a hello's positions do. For a
// multi_device: false channel the start is the furthest of the device's
// position and the one the user as a whole reached.
//
// Open is Resolve then Start; a surface that must index the stream for its
// own live delivery between the two (the hub does) calls them apart.
//
// # Reading
//
// Page reads a merged, bounded page across the stream's channels: seq
// order within each channel, channels taken round robin so that none
// starves, conditions and expiry applied, and every channel's new position
// even where every entry read was filtered out:
//
//	p, err := s.Page(ctx, 100, 1<<20) // at most 100 entries, about 1 MiB
//	// p.Entries, p.Positions (per channel moved), p.More
//
// Read is the same with a Sink instead of a slice, for a caller that
// encodes as it reads (the hub builds its pushes this way, with no
// allocation per entry). Positions lists where every channel stands, and
// Left estimates what is still to read. A channel whose history was reset,
// or whose entries were trimmed past the stream's position, makes Read
// return a *ChannelError; Recheck then gives its new status and position.
//
// # Confirming
//
// Confirm records that the device applied a channel up to a position;
// Feed.Confirm does the same for a caller without a stream (an HTTP ack),
// checking that the identity reads the channel and that the position is in
// its current epoch. Confirmed positions are written in batches by Run
// (every FlushInterval) and by Flush, never backwards within an epoch; for
// multi_device: false channels the user-wide position moves too.
//
// # Waiting
//
// A stream opened with Watch is told by Deliver, the Broker subscription,
// when one of its channels gets an entry. Wait blocks until then, until
// the token is revoked, or until ctx ends; Changed is the same as a
// channel for a select. The next Read or Page takes what arrived:
// persistent entries from the store, and entries of non-persistent bizzes
// (which are never stored) from a bounded queue. A stream whose queue
// overflows gets an error with CodeSlowConsumer from Read. Nothing polls
// the store while nothing is new.
//
// # Revocation
//
// Revoke(tokenID) ends, at once, every stream opened with a token of that
// id (Claims.TokenID): Revoked is closed, for the stream's owner to select
// on, and Wait returns an error with CodeUnauthorized. An Open that raced
// the revocation is refused with CodeUnauthorized.
//
// A Stream belongs to one goroutine: its Cursors, Read, Page, Recheck,
// Start and Confirm are not for concurrent use. Deliver, Revoke, Changed,
// Revoked and Close may be called from anywhere.
package feed
