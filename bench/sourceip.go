package bench

import (
	"net/netip"
	"strings"

	"github.com/syncpoint/syncpoint"
)

// MaxSourceIPs bounds the addresses ParseSourceIPs expands to; each one
// gives about 28,000 connections per server port on Linux.
const MaxSourceIPs = 4096

// ParseSourceIPs parses a list of local addresses to spread connections
// over: comma-separated items, each an address ("127.0.0.2") or an
// inclusive IPv4 or IPv6 range ("127.0.0.2-127.0.0.20"). "" gives none.
// Errors are *syncpoint.Error with CodeInvalid.
func ParseSourceIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		from, to, isRange := strings.Cut(item, "-")
		first, err := netip.ParseAddr(strings.TrimSpace(from))
		if err != nil {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "source ips: %q is not an IP address", clipText(from))
		}
		last := first
		if isRange {
			if last, err = netip.ParseAddr(strings.TrimSpace(to)); err != nil {
				return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "source ips: %q is not an IP address", clipText(to))
			}
		}
		if first.Is4() != last.Is4() || first.Zone() != last.Zone() {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "source ips: range %q mixes address families", clipText(item))
		}
		if last.Less(first) {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "source ips: range %q ends before it starts", clipText(item))
		}
		for a := first; ; a = a.Next() {
			if len(out) >= MaxSourceIPs {
				return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "source ips: more than %d addresses", MaxSourceIPs)
			}
			out = append(out, a)
			if a == last {
				break
			}
		}
	}
	return out, nil
}

// clipText shortens user input quoted in an error.
func clipText(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
