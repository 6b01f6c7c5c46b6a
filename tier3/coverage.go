package tier3

import (
	"strings"
	"sync/atomic"

	"github.com/routetrace/routetrace/event"
)

// Coverage is the set of (object, family) pairs tier 3 captures: those no
// FIB hook got a tier 1 or 2 attachment for.
type Coverage uint8

const (
	RouteInet Coverage = 1 << iota
	RouteInet6
	Rule
	Nexthop
	All = RouteInet | RouteInet6 | Rule | Nexthop
)

// Covers reports whether an event of this object and family is in c.
func (c Coverage) Covers(obj event.Object, family uint8) bool {
	switch obj {
	case event.ObjectRoute:
		if family == event.FamilyInet6 {
			return c&RouteInet6 != 0
		}
		return c&RouteInet != 0
	case event.ObjectRule:
		return c&Rule != 0
	case event.ObjectNexthop:
		return c&Nexthop != 0
	}
	return false
}

func (c Coverage) String() string {
	var parts []string
	for _, p := range []struct {
		bit  Coverage
		name string
	}{{RouteInet, "inet routes"}, {RouteInet6, "inet6 routes"}, {Rule, "rules"}, {Nexthop, "nexthops"}} {
		if c&p.bit != 0 {
			parts = append(parts, p.name)
		}
	}
	return strings.Join(parts, ", ")
}

// Record flags (RT_F_* in bpf/include/routetrace.h) that the joiner reads.
const (
	FlagTruncated = 1 << 1 // a capture limit, or a message longer than copied
	FlagLinkDown  = 1 << 2 // a link request that clears IFF_UP
)

// Stats counts what tier 3 could not report, so that no loss is silent.
type Stats struct {
	NotificationsLost atomic.Uint64 // rtnetlink notification overruns (ENOBUFS)
	Unconfirmed       atomic.Uint64 // requests with no notification or error
	ReadErrors        atomic.Uint64 // ring buffer or socket reads that failed
	Truncated         atomic.Uint64 // captures cut short by a kernel-side limit
	Evicted           atomic.Uint64 // pending requests dropped by the bound on them
	ListenerGaps      atomic.Uint64 // notification listeners restarted after an error
	Unlistened        atomic.Uint64 // requests seen in a namespace with no listener
	// AcksParked counts failure acks read before their request's record
	// (see ackParkWait): not a loss, each is reported either way.
	AcksParked atomic.Uint64
}
