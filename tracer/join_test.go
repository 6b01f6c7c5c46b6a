package tracer

import (
	"net/netip"
	"testing"

	"github.com/routetrace/routetrace/event"
)

// The joiner's rules, without a kernel: the host e2e tests and vmtest show
// them on real ones.

type joined struct {
	j   *joiner
	out []event.Event
}

func newJoined() *joined {
	jd := &joined{}
	var stats Stats
	c := clock{}
	jd.j = newJoiner(coverAll, &c, func(ev *event.Event) { jd.out = append(jd.out, *ev) }, &stats)
	return jd
}

// requestRecord is what the syscall capture writes for `ip route del`.
func requestRecord(pid, portid, seq uint32, op uint8, dst string) record {
	r := record{Kind: kindRequest, Op: op, Object: uint8(event.ObjectRoute), Family: event.FamilyInet,
		Origin: uint8(event.OriginNetlink), Attach: uint8(event.AttachTracepoint), Netns: 7,
		Portid: portid, Seq: seq, Pid: pid, Tgid: pid, Table: 254}
	p := netip.MustParsePrefix(dst)
	a := p.Addr().As4()
	copy(r.Dst[:], a[:])
	r.DstLen = uint8(p.Bits())
	for i, c := range "ip" {
		r.Comm[i] = int8(c)
	}
	return r
}

func notification(portid, seq uint32, op event.Op, dst string) event.Event {
	return event.Event{Op: op, Object: event.ObjectRoute, Family: event.FamilyInet, Netns: 7,
		Portid: portid, Seq: seq, Table: 254, Protocol: 4, Oif: 3, Dst: netip.MustParsePrefix(dst)}
}

func (jd *joined) request(r record) {
	var ev event.Event
	decodeRecord(jd.j.clock, &r, &ev)
	jd.j.request(&r, &ev, 0)
}

func TestJoinRequestThenNotification(t *testing.T) {
	jd := newJoined()
	jd.request(requestRecord(100, 55, 1, uint8(event.OpDelete), "10.1.0.0/24"))
	n := notification(55, 1, event.OpDelete, "10.1.0.0/24")
	jd.j.notification(&n, 0)
	if len(jd.out) != 1 {
		t.Fatalf("got %d events, want 1", len(jd.out))
	}
	ev := jd.out[0]
	if ev.Actor.Tgid != 100 || ev.Actor.Comm.String() != "ip" || ev.Protocol != 4 || ev.Oif != 3 ||
		ev.Origin != event.OriginNetlink || ev.Op != event.OpDelete {
		t.Errorf("got %+v: want the notification's route with the request's actor", ev)
	}
	if len(jd.j.pending) != 0 {
		t.Errorf("%d requests still pending", len(jd.j.pending))
	}
}

func TestJoinNotificationThenRequest(t *testing.T) {
	jd := newJoined()
	n := notification(55, 1, event.OpAdd, "10.1.0.0/24")
	jd.j.notification(&n, 0)
	if len(jd.out) != 0 {
		t.Fatalf("a notification was reported before its request could claim it")
	}
	jd.request(requestRecord(100, 55, 1, uint8(event.OpReplace), "10.1.0.0/24"))
	if len(jd.out) != 1 || jd.out[0].Actor.Tgid != 100 || jd.out[0].Op != event.OpReplace {
		t.Fatalf("got %+v, want one replace by pid 100", jd.out)
	}
	jd.j.expire(orphanWaitNs*2, false)
	if len(jd.out) != 1 {
		t.Errorf("the claimed notification was reported again on expiry: %d events", len(jd.out))
	}
}

func TestJoinFailure(t *testing.T) {
	jd := newJoined()
	jd.request(requestRecord(100, 55, 9, uint8(event.OpDelete), "10.9.9.0/24"))
	ack := event.Event{Netns: 7, Portid: 55, Seq: 9, Errno: 3}
	jd.j.ack(&ack, 25) // RTM_DELROUTE
	if len(jd.out) != 1 {
		t.Fatalf("got %d events, want 1", len(jd.out))
	}
	ev := jd.out[0]
	if ev.Errno != 3 || ev.Dst.String() != "10.9.9.0/24" || ev.Actor.Tgid != 100 || ev.Table != 254 {
		t.Errorf("got %+v, want the request, failed with ESRCH", ev)
	}
}

func TestJoinUnclaimedNotification(t *testing.T) {
	jd := newJoined()
	// A request seen earlier on the same socket makes its owner known.
	jd.request(requestRecord(100, 55, 1, uint8(event.OpAdd), "10.1.0.0/24"))
	n1 := notification(55, 1, event.OpAdd, "10.1.0.0/24")
	jd.j.notification(&n1, 0)
	// A message past the captured part of a batch: no request record.
	n2 := notification(55, 2, event.OpDelete, "10.2.0.0/24")
	jd.j.notification(&n2, 0)
	jd.j.expire(orphanWaitNs-1, false)
	if len(jd.out) != 1 {
		t.Fatalf("an orphan was settled before its wait: %d events", len(jd.out))
	}
	jd.j.expire(orphanWaitNs, false)
	if len(jd.out) != 2 || jd.out[1].Actor.Tgid != 100 || jd.out[1].Origin != event.OriginNetlink {
		t.Fatalf("got %+v, want the second change attributed to the socket's owner", jd.out)
	}
}

func TestJoinKernelRemovalCause(t *testing.T) {
	jd := newJoined()
	down := record{Kind: kindRequest, Op: uint8(event.OpReplace), Object: uint8(event.ObjectLink),
		Origin: uint8(event.OriginNetlink), Netns: 7, Portid: 60, Seq: 3, Pid: 200, Tgid: 200, Oif: 3,
		Flags: flagLinkDown}
	jd.request(down)
	n := notification(0, 0, event.OpDelete, "10.3.0.0/24")
	jd.j.notification(&n, 1)
	jd.j.expire(1+orphanWaitNs, false)
	if len(jd.out) != 1 {
		t.Fatalf("got %d events, want 1", len(jd.out))
	}
	ev := jd.out[0]
	if !ev.Actor.Kernel || ev.Origin != event.OriginKernel || ev.Path != event.PathNotification {
		t.Errorf("got actor %+v origin %s path %s, want the kernel via notification", ev.Actor, ev.Origin, ev.Path)
	}
	if c := ev.Cause; !c.Valid || c.Object != event.ObjectLink || c.Ifindex != 3 || c.Actor.Tgid != 200 {
		t.Errorf("cause %+v, want link 3 set down by pid 200", c)
	}
	// Past the trigger's lifetime nothing is blamed.
	n2 := notification(0, 0, event.OpDelete, "10.4.0.0/24")
	jd.j.notification(&n2, 1+triggerTTLNs+1)
	jd.j.expire(1+triggerTTLNs+1+orphanWaitNs, false)
	if len(jd.out) != 2 || jd.out[1].Cause.Valid {
		t.Errorf("got %+v, want a removal without a cause", jd.out[1:])
	}
}

func TestJoinIoctl(t *testing.T) {
	jd := newJoined()
	n := notification(0, 0, event.OpAdd, "198.51.100.0/24")
	jd.j.notification(&n, 0)
	r := requestRecord(300, 0, 0, uint8(event.OpAdd), "198.51.100.0/24")
	r.Origin = uint8(event.OriginIoctl)
	for i, c := range "route\x00" {
		r.Comm[i] = int8(c)
	}
	jd.request(r)
	jd.j.expire(orphanWaitNs, false)
	if len(jd.out) != 1 || jd.out[0].Origin != event.OriginIoctl || jd.out[0].Actor.Comm.String() != "route" ||
		jd.out[0].Oif != 3 {
		t.Fatalf("got %+v, want one ioctl add by route, described by the notification", jd.out)
	}
}

func TestJoinForeignObjectsIgnored(t *testing.T) {
	jd := newJoined()
	jd.j.cover = coverRule // routes are seen by FIB hooks
	jd.request(requestRecord(100, 55, 1, uint8(event.OpDelete), "10.1.0.0/24"))
	n := notification(55, 1, event.OpDelete, "10.1.0.0/24")
	jd.j.notification(&n, 0)
	jd.j.expire(orphanWaitNs, true)
	if len(jd.out) != 0 {
		t.Fatalf("got %d events for an object tier 3 does not cover", len(jd.out))
	}
}

// TestJoinSilentFlush: IPv4 routes gone from a dump taken after an address
// deletion, with no notification, are reported as flushed by the kernel,
// caused by that deletion; routes deleted with a notification are not
// reported twice, and routes added during the dump are not reported.
func TestJoinSilentFlush(t *testing.T) {
	jd := newJoined()
	var dumps []uint32
	jd.j.dump = func(netns, seq uint32) error { dumps = append(dumps, seq); return nil }
	const us = 900 // the listener's portid
	jd.j.watchRoutes(7, us, 1)
	answer := func(seq uint32, dst string) {
		n := notification(us, seq, event.OpAdd, dst)
		jd.j.notification(&n, 0)
	}
	// The first cut: three routes.
	answer(1, "10.1.0.0/24")
	answer(1, "10.2.0.0/24")
	answer(1, "10.3.0.0/24")
	jd.j.dumpDone(7, us, 1, 0)
	if len(jd.out) != 0 {
		t.Fatalf("the first dump reported %d events", len(jd.out))
	}
	// 10.2.0.0/24 is deleted by a request (its notification reports it).
	jd.request(requestRecord(100, 55, 4, uint8(event.OpDelete), "10.2.0.0/24"))
	n := notification(55, 4, event.OpDelete, "10.2.0.0/24")
	jd.j.notification(&n, 0)
	// An address deletion: a dump is due a little later.
	del := record{Kind: kindRequest, Op: uint8(event.OpDelete), Object: uint8(event.ObjectAddr), Family: event.FamilyInet,
		Origin: uint8(event.OriginNetlink), Netns: 7, Portid: 61, Seq: 5, Pid: 200, Tgid: 200, Oif: 3, DstLen: 24}
	copy(del.Dst[:], []byte{192, 0, 2, 1})
	jd.request(del)
	jd.j.expire(dumpDelayNs-1, false)
	if len(dumps) != 0 {
		t.Fatalf("dump requested before its delay")
	}
	jd.j.expire(dumpDelayNs, false)
	if len(dumps) != 1 {
		t.Fatalf("%d dumps requested, want 1", len(dumps))
	}
	seq := dumps[0]
	// The dump has 10.1 only; 10.4 is added (notified) while it runs.
	answer(seq, "10.1.0.0/24")
	added := notification(56, 1, event.OpAdd, "10.4.0.0/24")
	jd.j.notification(&added, dumpDelayNs)
	jd.j.dumpDone(7, us, seq, dumpDelayNs)

	var flushed []event.Event
	for _, ev := range jd.out {
		if ev.Origin == event.OriginKernel {
			flushed = append(flushed, ev)
		}
	}
	if len(flushed) != 1 {
		t.Fatalf("got %d kernel removals %+v, want 10.3.0.0/24 only", len(flushed), flushed)
	}
	f := flushed[0]
	if f.Dst.String() != "10.3.0.0/24" || f.Op != event.OpDelete || !f.Actor.Kernel || f.Path != event.PathFibTableFlush ||
		f.Protocol != 4 || f.Oif != 3 || f.Table != 254 {
		t.Errorf("got %+v, want 10.3.0.0/24 flushed by the kernel", f)
	}
	if c := f.Cause; !c.Valid || c.Object != event.ObjectAddr || c.Actor.Tgid != 200 || c.Prefix.String() != "192.0.2.1/24" {
		t.Errorf("cause %+v, want the deletion of 192.0.2.1/24 by pid 200", c)
	}
	// A dump answer for a stale seq changes nothing.
	jd.j.dumpDone(7, us, seq, dumpDelayNs)
	if len(jd.out) != 2 {
		t.Errorf("a second DONE reported more: %d events", len(jd.out))
	}
}
