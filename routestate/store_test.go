package routestate

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/nltest"
	"github.com/routetrace/routetrace/rtnl"
)

// podRoute is what a CNI installs per pod, as the kernel notifies it:
// a /32 through the pod's veth, scope link, in table main.
func podRoute(typ uint16, i int) []byte {
	dst := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return nltest.NewMsg(typ, 0, 0, 0, nltest.Rtmsg(unix.AF_INET, 32, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_LINK, unix.RTN_UNICAST)).
		Attr(unix.RTA_TABLE, nltest.U32(unix.RT_TABLE_MAIN)).Attr(unix.RTA_DST, dst.AsSlice()).
		Attr(unix.RTA_OIF, nltest.U32(uint32(1000+i))).Bytes()
}

func feed(s *Store, ns *netnsState, msg []byte) {
	h, m, _, err := rtnl.Next(msg)
	if err != nil {
		panic(err)
	}
	s.handle(ns, h, m)
}

func newState(ino uint32) *netnsState {
	return &netnsState{ino: ino, objs: make(map[Key]*entry), links: make(map[uint32]event.Name), req: -1}
}

// TestSnapshotMemory measures the bytes kept per route on a node of 100k
// pod routes, and holds it to a bound.
func TestSnapshotMemory(t *testing.T) {
	const n = 100_000
	s := New(Options{})
	ns := newState(1)
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = podRoute(unix.RTM_NEWROUTE, i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, m := range msgs {
		feed(s, ns, m)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(msgs)
	if len(ns.objs) != n {
		t.Fatalf("%d routes kept, want %d", len(ns.objs), n)
	}
	per := (after.HeapAlloc - before.HeapAlloc) / n
	t.Logf("%d bytes per route kept (%d routes, message of %d bytes)", per, n, len(msgs[0]))
	if per > 400 {
		t.Errorf("%d bytes per route, want at most 400", per)
	}
}

// TestStoreFollowsNotifications: a deletion leaves the object in the
// graveyard (its event may come later), a re-add brings it back, the
// graveyard empties after its time, and Keep decides what is kept.
func TestStoreFollowsNotifications(t *testing.T) {
	s := New(Options{Graveyard: 50 * time.Millisecond, Keep: func(ev *event.Event) bool {
		return ev.Dev.String() != "lxc-unprotected"
	}})
	ns := newState(7)
	s.byNs[7] = ns
	var dev event.Name
	dev.Set("lxc-unprotected")
	ns.links[1001] = dev // podRoute(_, 1)'s device

	feed(s, ns, podRoute(unix.RTM_NEWROUTE, 0))
	feed(s, ns, podRoute(unix.RTM_NEWROUTE, 1))
	k0 := Key{Netns: 7, Object: event.ObjectRoute, Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Dst: netip.MustParsePrefix("10.0.0.0/32")}
	k1 := k0
	k1.Dst = netip.MustParsePrefix("10.0.0.1/32")
	if got := s.Lookup(k0); got != Present {
		t.Errorf("after add: %v, want present", got)
	}
	if got := s.Lookup(k1); got != Unknown {
		t.Errorf("a route Keep refuses: %v, want unknown", got)
	}
	feed(s, ns, podRoute(unix.RTM_DELROUTE, 0))
	if got := s.Lookup(k0); got != Deleted {
		t.Errorf("after delete: %v, want deleted", got)
	}
	if _, msg, err := s.message(k0); err != nil || msg == nil {
		t.Errorf("a deleted route's snapshot: %v", err)
	}
	feed(s, ns, podRoute(unix.RTM_NEWROUTE, 0))
	if got := s.Lookup(k0); got != Present {
		t.Errorf("after re-add: %v, want present", got)
	}
	feed(s, ns, podRoute(unix.RTM_DELROUTE, 0))
	time.Sleep(60 * time.Millisecond)
	feed(s, ns, podRoute(unix.RTM_DELROUTE, 2)) // any message buries the old
	if got := s.Lookup(k0); got != Unknown {
		t.Errorf("past the graveyard time: %v, want unknown", got)
	}
	if _, _, err := s.message(k0); err != ErrNoSnapshot {
		t.Errorf("past the graveyard time: %v, want ErrNoSnapshot", err)
	}
}

func rule(typ uint16, prio uint32, src string) []byte {
	return nltest.NewMsg(typ, 0, 0, 0, nltest.FibRuleHdr(unix.AF_INET, 0, 16, 0, 100, unix.FR_ACT_TO_TBL)).
		Attr(unix.FRA_PRIORITY, nltest.U32(prio)).Attr(unix.FRA_SRC, nltest.IP(src)).Bytes()
}

// TestFind: a deletion described by its request's selectors (tiers 1-2:
// "ip rule del pref 100") finds the rule the kernel removed; several
// present rules it could mean are not guessed between.
func TestFind(t *testing.T) {
	s := New(Options{})
	ns := newState(7)
	s.byNs[7] = ns
	feed(s, ns, rule(unix.RTM_NEWRULE, 100, "10.244.0.0"))
	feed(s, ns, rule(unix.RTM_NEWRULE, 300, "10.1.0.0"))
	feed(s, ns, rule(unix.RTM_NEWRULE, 300, "10.2.0.0"))
	full := Key{Netns: 7, Object: event.ObjectRule, Family: unix.AF_INET, Priority: 100, Table: 100, Action: unix.FR_ACT_TO_TBL,
		Src: netip.MustParsePrefix("10.244.0.0/16")}
	sel := Key{Netns: 7, Object: event.ObjectRule, Family: unix.AF_INET, Priority: 100}
	if got, ok := s.Find(sel); !ok || got != full {
		t.Errorf("present: Find = %+v, %v; want %+v", got, ok, full)
	}
	feed(s, ns, rule(unix.RTM_DELRULE, 100, "10.244.0.0"))
	if got, ok := s.Find(sel); !ok || got != full {
		t.Errorf("deleted: Find = %+v, %v; want %+v", got, ok, full)
	}
	if got, ok := s.Find(full); !ok || got != full {
		t.Errorf("exact: Find = %+v, %v", got, ok)
	}
	sel.Priority = 300
	if got, ok := s.Find(sel); ok {
		t.Errorf("two present rules of priority 300: Find chose %+v", got)
	}
	feed(s, ns, rule(unix.RTM_DELRULE, 300, "10.2.0.0"))
	if got, ok := s.Find(sel); !ok || got.Src != netip.MustParsePrefix("10.2.0.0/16") {
		t.Errorf("one of them deleted: Find = %+v, %v; want the deleted one", got, ok)
	}
}
