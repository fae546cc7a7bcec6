package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/syncpoint/syncpoint"
)

// testHeads checks syncpoint.HeadReader, for a store that has it: each
// channel's info as Channel gives it, in the order asked, duplicates and
// never-created channels included.
func testHeads(t *testing.T, s syncpoint.Store) {
	hr, ok := s.(syncpoint.HeadReader)
	if !ok {
		t.Skip("the store has no Heads (syncpoint.HeadReader), which is optional")
	}
	ctx := context.Background()
	if infos, err := hr.Heads(ctx, nil); err != nil || len(infos) != 0 {
		t.Fatalf("heads of no channels: %v %v, want none", infos, err)
	}

	t1 := hourFromNow()
	mustAppend(t, s, expiring(msg(chatU1, `1`), t1), msg(chatU1, `2`), msg(chatU1, `3`), msg(recsG1, `1`))
	mustSweep(t, s, t1) // chatU1 now starts at 2
	reset, err := s.ResetChannel(ctx, recsG1)
	if err != nil {
		t.Fatal(err)
	}
	never := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("nobody")}
	ask := []syncpoint.Channel{never, chatU1, recsG1, chatU1, cfgAll}
	infos, err := hr.Heads(ctx, ask)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != len(ask) {
		t.Fatalf("%d infos for %d channels", len(infos), len(ask))
	}
	chat := mustInfo(t, s, chatU1)
	unknown := func(ch syncpoint.Channel) syncpoint.ChannelInfo {
		return syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}
	}
	for i, want := range []syncpoint.ChannelInfo{unknown(never), chat, reset, chat, unknown(cfgAll)} {
		if infos[i] != want {
			t.Errorf("heads[%d] (%s): %+v, want %+v", i, ask[i], infos[i], want)
		}
	}
	if chat.FirstSeq != 2 || chat.LastSeq != 3 {
		t.Fatalf("%s: %+v, want 2..3 after the sweep", chatU1, chat)
	}

	// Many channels at once, most of them never created.
	var many []syncpoint.Channel
	for i := range 300 {
		many = append(many, syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget(fmt.Sprintf("m%d", i))})
	}
	mustAppend(t, s, msg(many[7], `1`), msg(many[7], `2`), msg(many[250], `1`))
	infos, err = hr.Heads(ctx, many)
	if err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		want := unknown(many[i])
		if i == 7 || i == 250 {
			want = mustInfo(t, s, many[i])
		}
		if info != want {
			t.Fatalf("heads[%d]: %+v, want %+v", i, info, want)
		}
	}

	bad := syncpoint.Channel{Biz: "Chat!", Target: syncpoint.UserTarget("u1")}
	if _, err := hr.Heads(ctx, []syncpoint.Channel{chatU1, bad}); syncpoint.Code(err) != syncpoint.CodeInvalid {
		t.Fatalf("heads with a malformed channel: %v, want code %q", err, syncpoint.CodeInvalid)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = hr.Heads(cancelled, []syncpoint.Channel{chatU1})
	wantErr(t, "heads with a cancelled context", err, context.Canceled)
}
