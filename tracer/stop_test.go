package tracer

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/vishvananda/netlink"
)

// A tracer stopped while a requester keeps changing routes: the requests
// it read before the stop were all confirmed, and those made after the
// stop are outside the trace, not losses. Before the fix, a request whose
// record the ring buffer still gave after the notification sockets had
// been read to their end waited for a notification that could not come,
// and the stop counted it unconfirmed (exit status 3 in routetrace trace:
// the incident's enforce-repair variant failed so on 6.12 in CI).
func TestStopDuringRequests(t *testing.T) {
	skipForcedFIBTier(t)
	ns := newNetns(t)
	s := startTracer(t, ns)
	requireTier3(t, s)
	nl := netlinkIn(t, ns)
	link, err := nl.LinkByName("v0")
	if err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var made atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Table: 100,
				Dst: &net.IPNet{IP: net.IPv4(10, 77, byte(i>>8), byte(i)), Mask: net.CIDRMask(32, 32)}}
			if err := nl.RouteAdd(r); err != nil {
				t.Errorf("adding route %d: %v", i, err)
				return
			}
			if err := nl.RouteDel(r); err != nil {
				t.Errorf("deleting route %d: %v", i, err)
				return
			}
			made.Add(2)
		}
	})
	// Let the storm run, then stop tracing in the middle of it.
	deadline := time.Now().Add(5 * time.Second)
	for made.Load() < 400 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before := made.Load()
	var evs []event.Event
	storm := netip.MustParsePrefix("10.77.0.0/16")
	for _, ev := range in(s.stop(), ns) {
		if storm.Overlaps(ev.Dst) { // not the kernel's own (link-local routes as DAD ends)
			evs = append(evs, ev)
		}
	}
	stop.Store(true)
	wg.Wait()

	losses := s.tr.Losses()
	if losses.Unconfirmed != 0 || losses.Total() != 0 {
		t.Errorf("stopped during %d requests (%d reported): losses %+v; want none", made.Load(), len(evs), losses)
	}
	if int64(len(evs)) < before {
		t.Errorf("%d changes reported; want at least the %d made before the stop", len(evs), before)
	}
	// What was reported is a prefix of what was made, in order: every
	// route added, then deleted, none skipped.
	for i, ev := range evs {
		want := fmt.Sprintf("%s 10.77.%d.%d/32", map[bool]string{true: "add", false: "delete"}[i%2 == 0], (i/2)>>8&0xff, (i/2)&0xff)
		if got := fmt.Sprintf("%s %s", ev.Op, ev.Dst); got != want {
			t.Fatalf("change %d: %s; want %s", i, got, want)
		}
	}
}
