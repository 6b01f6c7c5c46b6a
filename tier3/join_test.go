package tier3

import (
	"net/netip"
	"testing"

	"github.com/routetrace/routetrace/event"
)

// The joiner's rules, without a kernel: the host e2e tests and vmtest show
// them on real ones.

type joined struct {
	j   *Joiner
	out []event.Event
}

func newJoined() *joined {
	jd := &joined{}
	var stats Stats
	jd.j = NewJoiner(All, func(ev *event.Event) { jd.out = append(jd.out, *ev) }, &stats, nil)
	return jd
}

// record holds the fields of a ring buffer record these tests set; event
// decodes it as the tracer does.
type record struct {
	Kind, Op, Object, Family, Origin, Attach, DstLen uint8
	Flags, NlmsgType                                 uint16
	Netns, Portid, Seq, Pid, Tgid, Table, Oif        uint32
	Err                                              int32
	Cookie                                           uint64
	Dst                                              [16]uint8
	Comm                                             [16]int8
}

const (
	kindRequest = 2
	kindAck     = 3
)

func (r *record) event() event.Event {
	ev := event.Event{Op: event.Op(r.Op), Object: event.Object(r.Object), Family: r.Family,
		Origin: event.Origin(r.Origin), Attach: event.Attach(r.Attach), Netns: r.Netns, Portid: r.Portid,
		Seq: r.Seq, Table: r.Table, Oif: r.Oif}
	if r.Err < 0 {
		ev.Errno = -r.Err
	}
	if r.Family == event.FamilyInet && (ev.Object == event.ObjectRoute || ev.Object == event.ObjectAddr) {
		ev.Dst = netip.PrefixFrom(netip.AddrFrom4([4]byte(r.Dst[:4])), int(r.DstLen))
	}
	ev.Actor.Pid, ev.Actor.Tgid, ev.Actor.Cookie = r.Pid, r.Tgid, r.Cookie
	for i, c := range r.Comm {
		ev.Actor.Comm[i] = byte(c)
	}
	return ev
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
	ev := r.event()
	jd.j.Request(&ev, r.Flags, 0)
}

func TestJoinRequestThenNotification(t *testing.T) {
	jd := newJoined()
	jd.request(requestRecord(100, 55, 1, uint8(event.OpDelete), "10.1.0.0/24"))
	n := notification(55, 1, event.OpDelete, "10.1.0.0/24")
	jd.j.notification(&n, 0, 0)
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

// TestJoinCarriesCookie: the process record's cookie travels with the
// actor wherever the joiner puts it: the request's change, a change
// attributed to the socket's owner, and the cause of a kernel removal.
func TestJoinCarriesCookie(t *testing.T) {
	jd := newJoined()
	r := requestRecord(100, 55, 1, uint8(event.OpDelete), "10.1.0.0/24")
	r.Cookie = 0x10001
	jd.request(r)
	n1 := notification(55, 1, event.OpDelete, "10.1.0.0/24")
	jd.j.notification(&n1, 0, 0)
	n2 := notification(55, 2, event.OpDelete, "10.2.0.0/24") // past the captured part
	jd.j.notification(&n2, 0, 0)
	jd.j.Expire(orphanWaitNs, false)
	if len(jd.out) != 2 {
		t.Fatalf("got %d events, want 2", len(jd.out))
	}
	for i, ev := range jd.out {
		if ev.Actor.Cookie != 0x10001 {
			t.Errorf("event %d: cookie %#x, want the request's 0x10001", i, ev.Actor.Cookie)
		}
	}

	jd = newJoined()
	down := record{Kind: kindRequest, Op: uint8(event.OpReplace), Object: uint8(event.ObjectLink),
		Origin: uint8(event.OriginNetlink), Netns: 7, Portid: 60, Seq: 3, Pid: 200, Tgid: 200, Oif: 3,
		Flags: FlagLinkDown, Cookie: 0x20002}
	jd.request(down)
	n := notification(0, 0, event.OpDelete, "10.3.0.0/24")
	jd.j.notification(&n, 0, 1)
	linkDown := event.Event{Op: event.OpAdd, Object: event.ObjectLink, Netns: 7, Portid: 60, Seq: 3, Oif: 3}
	jd.j.trigger(&linkDown, 0, 2)
	jd.j.Expire(1+orphanWaitNs, false)
	if len(jd.out) != 1 {
		t.Fatalf("got %d events, want 1", len(jd.out))
	}
	if ev := jd.out[0]; ev.Actor.Cookie != 0 || ev.Cause.Actor.Cookie != 0x20002 {
		t.Errorf("kernel removal: actor cookie %#x, cause's %#x; want 0 and 0x20002", ev.Actor.Cookie, ev.Cause.Actor.Cookie)
	}
}

func TestJoinNotificationThenRequest(t *testing.T) {
	jd := newJoined()
	n := notification(55, 1, event.OpAdd, "10.1.0.0/24")
	jd.j.notification(&n, 0, 0)
	if len(jd.out) != 0 {
		t.Fatalf("a notification was reported before its request could claim it")
	}
	jd.request(requestRecord(100, 55, 1, uint8(event.OpReplace), "10.1.0.0/24"))
	if len(jd.out) != 1 || jd.out[0].Actor.Tgid != 100 || jd.out[0].Op != event.OpReplace {
		t.Fatalf("got %+v, want one replace by pid 100", jd.out)
	}
	jd.j.Expire(orphanWaitNs*2, false)
	if len(jd.out) != 1 {
		t.Errorf("the claimed notification was reported again on expiry: %d events", len(jd.out))
	}
}

func TestJoinFailure(t *testing.T) {
	jd := newJoined()
	jd.request(requestRecord(100, 55, 9, uint8(event.OpDelete), "10.9.9.0/24"))
	jd.ack(55, 9, 25, 3) // RTM_DELROUTE, ESRCH
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
	jd.j.notification(&n1, 0, 0)
	// A message past the captured part of a batch: no request record.
	n2 := notification(55, 2, event.OpDelete, "10.2.0.0/24")
	jd.j.notification(&n2, 0, 0)
	jd.j.Expire(orphanWaitNs-1, false)
	if len(jd.out) != 1 {
		t.Fatalf("an orphan was settled before its wait: %d events", len(jd.out))
	}
	jd.j.Expire(orphanWaitNs, false)
	if len(jd.out) != 2 || jd.out[1].Actor.Tgid != 100 || jd.out[1].Origin != event.OriginNetlink {
		t.Fatalf("got %+v, want the second change attributed to the socket's owner", jd.out)
	}
}

func TestJoinKernelRemovalCause(t *testing.T) {
	jd := newJoined()
	down := record{Kind: kindRequest, Op: uint8(event.OpReplace), Object: uint8(event.ObjectLink),
		Origin: uint8(event.OriginNetlink), Netns: 7, Portid: 60, Seq: 3, Pid: 200, Tgid: 200, Oif: 3,
		Flags: FlagLinkDown}
	jd.request(down)
	// IPv6 routes are notified before the link's own RTM_NEWLINK.
	n := notification(0, 0, event.OpDelete, "10.3.0.0/24")
	jd.j.notification(&n, 0, 1)
	linkDown := event.Event{Op: event.OpAdd, Object: event.ObjectLink, Netns: 7, Portid: 60, Seq: 3, Oif: 3}
	jd.j.trigger(&linkDown, 0, 2)
	jd.j.Expire(1+orphanWaitNs, false)
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
	jd.j.notification(&n2, 0, 1+triggerTTLNs+1)
	jd.j.Expire(1+triggerTTLNs+1+orphanWaitNs, false)
	if len(jd.out) != 2 || jd.out[1].Cause.Valid {
		t.Errorf("got %+v, want a removal without a cause", jd.out[1:])
	}
}

func TestJoinIoctl(t *testing.T) {
	jd := newJoined()
	n := notification(0, 0, event.OpAdd, "198.51.100.0/24")
	jd.j.notification(&n, 0, 0)
	r := requestRecord(300, 0, 0, uint8(event.OpAdd), "198.51.100.0/24")
	r.Origin = uint8(event.OriginIoctl)
	for i, c := range "route\x00" {
		r.Comm[i] = int8(c)
	}
	jd.request(r)
	jd.j.Expire(orphanWaitNs, false)
	if len(jd.out) != 1 || jd.out[0].Origin != event.OriginIoctl || jd.out[0].Actor.Comm.String() != "route" ||
		jd.out[0].Oif != 3 {
		t.Fatalf("got %+v, want one ioctl add by route, described by the notification", jd.out)
	}
}

func TestJoinForeignObjectsIgnored(t *testing.T) {
	jd := newJoined()
	jd.j.cover = Rule // routes are seen by FIB hooks
	jd.request(requestRecord(100, 55, 1, uint8(event.OpDelete), "10.1.0.0/24"))
	n := notification(55, 1, event.OpDelete, "10.1.0.0/24")
	jd.j.notification(&n, 0, 0)
	jd.j.Expire(orphanWaitNs, true)
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
		jd.j.notification(&n, 0, 0)
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
	jd.j.notification(&n, 0, 0)
	// An address deletion: its notification comes from inside the
	// request, so the dump waits for the request's ack.
	del := record{Kind: kindRequest, Op: uint8(event.OpDelete), Object: uint8(event.ObjectAddr), Family: event.FamilyInet,
		Origin: uint8(event.OriginNetlink), Netns: 7, Portid: 61, Seq: 5, Pid: 200, Tgid: 200, Oif: 3, DstLen: 24}
	copy(del.Dst[:], []byte{192, 0, 2, 1})
	jd.request(del)
	deladdr := event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: event.FamilyInet, Netns: 7, Portid: 61, Seq: 5,
		Oif: 3, Dst: netip.MustParsePrefix("192.0.2.1/24")}
	jd.j.trigger(&deladdr, 0, 0)
	jd.j.Expire(completionWaitNs-1, false)
	if len(dumps) != 0 {
		t.Fatalf("dump requested before the request completed")
	}
	jd.ack(61, 5, 21, 0) // its ack: RTM_DELADDR succeeded
	if len(dumps) != 1 {
		t.Fatalf("%d dumps requested after the ack, want 1", len(dumps))
	}
	const dumpDelayNs = completionWaitNs - 1
	seq := dumps[0]
	// The dump has 10.1 only; 10.4 is added (notified) while it runs.
	answer(seq, "10.1.0.0/24")
	added := notification(56, 1, event.OpAdd, "10.4.0.0/24")
	jd.j.notification(&added, 0, dumpDelayNs)
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

// ack feeds an ACK record as the recvmsg capture writes it: the reader's
// actor (pid 300, "reader"), the failed request's header, the errno.
func (jd *joined) ack(portid, seq uint32, nlmsgType uint16, errno int32) {
	r := record{Kind: kindAck, Origin: uint8(event.OriginNetlink), Attach: uint8(event.AttachTracepoint),
		Netns: 7, Portid: portid, Seq: seq, NlmsgType: nlmsgType, Err: -errno, Pid: 300, Tgid: 300}
	for i, c := range "reader" {
		r.Comm[i] = int8(c)
	}
	ev := r.event()
	jd.j.Ack(&ev, r.Flags, r.NlmsgType, 0, 0)
}

// A failure whose request was past the capture's limit is still reported,
// with the ack's errno and the actor that read it, once it has waited for
// its request in vain.
func TestJoinFailureWithoutRequest(t *testing.T) {
	jd := newJoined()
	jd.ack(55, 70, 25, 22) // RTM_DELROUTE, EINVAL
	jd.ack(55, 71, 24, 17) // RTM_NEWROUTE, EEXIST
	if len(jd.out) != 0 || jd.j.Idle() {
		t.Fatalf("got %d events and idle %v before the acks waited for their requests", len(jd.out), jd.j.Idle())
	}
	jd.j.Expire(ackParkWaitNs, false)
	if len(jd.out) != 2 {
		t.Fatalf("got %d events, want 2 failures", len(jd.out))
	}
	del, add := jd.out[0], jd.out[1]
	if del.Op != event.OpDelete || del.Object != event.ObjectRoute || del.Errno != 22 || del.Seq != 70 ||
		del.Actor.Tgid != 300 || del.Actor.Comm.String() != "reader" || del.Origin != event.OriginNetlink {
		t.Errorf("got %+v, want a failed route delete by pid 300", del)
	}
	if add.Op != event.OpAdd || add.Errno != 17 {
		t.Errorf("got %+v, want a failed route add (EEXIST)", add)
	}
}

// A capture that stopped at a limit is counted, not silent.
func TestJoinTruncatedCaptureCounted(t *testing.T) {
	jd := newJoined()
	r := record{Kind: kindRequest, Origin: uint8(event.OriginNetlink), Netns: 7, Portid: 55, Pid: 100, Tgid: 100, Flags: FlagTruncated}
	jd.request(r)
	a := record{Kind: kindAck, Netns: 7, Portid: 55, Flags: FlagTruncated}
	ev := a.event()
	jd.j.Ack(&ev, a.Flags, 0, 0, 0)
	if got := jd.j.stats.Truncated.Load(); got != 2 {
		t.Errorf("truncated = %d, want 2 (one request, one ack limit)", got)
	}
	if len(jd.out) != 0 {
		t.Errorf("limit records were reported as changes: %+v", jd.out)
	}
}

// Pending requests are bounded: the oldest go first, and are counted.
func TestJoinPendingBounded(t *testing.T) {
	jd := newJoined()
	for i := uint32(0); i < maxPending+10; i++ {
		jd.request(requestRecord(100, 55, i, uint8(event.OpDelete), "10.1.0.0/24"))
	}
	if len(jd.j.pending) != maxPending {
		t.Errorf("%d pending, want the bound %d", len(jd.j.pending), maxPending)
	}
	if got := jd.j.stats.Evicted.Load(); got != 10 {
		t.Errorf("evicted = %d, want 10", got)
	}
	if _, ok := jd.j.pending[reqKey{netns: 7, portid: 55, seq: 0, object: event.ObjectRoute}]; ok {
		t.Errorf("the oldest request was kept")
	}
	jd.j.Expire(pendingTTLNs+1, false)
	if len(jd.j.pending) != 0 || jd.j.stats.Unconfirmed.Load() != maxPending {
		t.Errorf("after expiry: %d pending, %d unconfirmed; want 0 and %d", len(jd.j.pending), jd.j.stats.Unconfirmed.Load(), maxPending)
	}
}

// Kernel removals take their cause from a confirmed change that touches
// them: same namespace and link, or the address's subnet; never the newest
// unrelated change, never a request that failed.
func TestJoinCauseMatching(t *testing.T) {
	jd := newJoined()
	// ip link del v0 (ifindex 3) by pid 100, confirmed by its notification.
	link := requestRecord(100, 55, 1, uint8(event.OpDelete), "10.1.0.0/24")
	link.Object, link.Oif = uint8(event.ObjectLink), 3
	jd.request(link)
	dellink := event.Event{Op: event.OpDelete, Object: event.ObjectLink, Netns: 7, Portid: 55, Seq: 1, Oif: 3}
	jd.j.trigger(&dellink, 0, 0)
	// A later address removal on another link (ifindex 9) by pid 200.
	addr := requestRecord(200, 66, 2, uint8(event.OpDelete), "198.51.100.1/24")
	addr.Object, addr.Oif = uint8(event.ObjectAddr), 9
	jd.request(addr)
	deladdr := event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: event.FamilyInet, Netns: 7, Portid: 66, Seq: 2,
		Oif: 9, Dst: netip.MustParsePrefix("198.51.100.1/24")}
	jd.j.trigger(&deladdr, 0, 1)
	// A failed link removal (ifindex 4): no notification, so no trigger.
	failed := requestRecord(400, 77, 3, uint8(event.OpDelete), "10.1.0.0/24")
	failed.Object, failed.Oif = uint8(event.ObjectLink), 4
	jd.request(failed)
	jd.ack(77, 3, 17, 19) // RTM_DELLINK, ENODEV

	route := func(oif uint32, gw string) *event.Event {
		ev := notification(0, 0, event.OpDelete, "10.5.0.0/24")
		ev.Oif = oif
		if gw != "" {
			ev.Gateway = netip.MustParseAddr(gw)
		}
		return &ev
	}
	if c := jd.j.cause(route(3, ""), 2); c == nil || c.Actor.Tgid != 100 || c.Object != event.ObjectLink {
		t.Errorf("route via ifindex 3: cause %+v, want the link deletion by pid 100", c)
	}
	if c := jd.j.cause(route(5, "198.51.100.7"), 2); c == nil || c.Actor.Tgid != 200 || c.Object != event.ObjectAddr {
		t.Errorf("route via a gateway in 198.51.100.0/24: cause %+v, want the address removal by pid 200", c)
	}
	if c := jd.j.cause(route(4, ""), 2); c != nil {
		t.Errorf("route via ifindex 4: cause %+v, want none (its link removal failed)", c)
	}
	if c := jd.j.cause(route(8, ""), 2); c != nil {
		t.Errorf("route via ifindex 8: cause %+v, want none (nothing touched it)", c)
	}
	other := route(3, "")
	other.Netns = 8
	if c := jd.j.cause(other, 2); c != nil {
		t.Errorf("route in another namespace: cause %+v, want none", c)
	}
	if c := jd.j.cause(route(3, ""), triggerTTLNs+10); c != nil {
		t.Errorf("route long after: cause %+v, want none", c)
	}
}

// After an overrun the next dump resynchronises the cache, and what it
// lacks is reported without blaming anyone.
func TestJoinOverrunResync(t *testing.T) {
	jd := newJoined()
	var dumps []uint32
	jd.j.dump = func(netns, seq uint32) error { dumps = append(dumps, seq); return nil }
	jd.j.watchRoutes(7, 999, 1)
	a := notification(999, 1, event.OpAdd, "10.1.0.0/24") // the first dump
	jd.j.notification(&a, 0, 0)
	jd.j.dumpDone(7, 999, 1, 0)
	// ip link del of ifindex 3 by pid 100, then an overrun.
	dellink := event.Event{Op: event.OpDelete, Object: event.ObjectLink, Netns: 7, Portid: 0, Oif: 3}
	jd.j.trigger(&dellink, 0, 0)
	jd.j.overrun(7, 0)
	if len(dumps) != 1 {
		t.Fatalf("%d dumps requested, want 1", len(dumps))
	}
	jd.j.dumpDone(7, 999, dumps[0], 0)
	if len(jd.out) != 1 {
		t.Fatalf("got %d events, want 1", len(jd.out))
	}
	ev := jd.out[0]
	if ev.Dst.String() != "10.1.0.0/24" || ev.Origin != event.OriginUnknown || ev.Actor.Kernel || ev.Cause.Valid || ev.Actor.Tgid != 0 {
		t.Errorf("got %+v, want the route removed by an unknown actor, no cause", ev)
	}
}

// Without an ack (a requester that asked for none) the dump is taken when
// the wait ends; a kernel-initiated address removal is looked at twice.
func TestJoinDumpWithoutAck(t *testing.T) {
	jd := newJoined()
	var dumps []uint32
	jd.j.dump = func(netns, seq uint32) error { dumps = append(dumps, seq); return nil }
	jd.j.watchRoutes(7, 900, 1)
	jd.j.dumpDone(7, 900, 1, 0)
	deladdr := event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: event.FamilyInet, Netns: 7, Portid: 61, Seq: 5, Oif: 3}
	jd.j.trigger(&deladdr, 0, 0)
	jd.j.Expire(completionWaitNs, false)
	if len(dumps) != 1 {
		t.Fatalf("%d dumps after the completion wait, want 1", len(dumps))
	}
	jd.j.dumpDone(7, 900, dumps[0], completionWaitNs)
	expired := event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: event.FamilyInet, Netns: 7, Oif: 3} // lifetime ended
	now := 2 * completionWaitNs
	jd.j.trigger(&expired, 0, now)
	jd.j.Expire(now+kernelSettleNs-1, false)
	if len(dumps) != 1 {
		t.Fatalf("a dump was taken before the kernel's notifications settled")
	}
	jd.j.Expire(now+kernelSettleNs, false)
	if len(dumps) != 2 {
		t.Fatalf("%d dumps after a kernel address removal, want 2", len(dumps))
	}
	jd.j.dumpDone(7, 900, dumps[1], now)
	jd.j.Expire(now+confirmDelayNs, false)
	if len(dumps) != 3 {
		t.Fatalf("%d dumps after the confirmation delay, want 3", len(dumps))
	}
	ipv6 := event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: event.FamilyInet6, Netns: 7, Oif: 3}
	jd.j.dumpDone(7, 900, dumps[2], now+confirmDelayNs)
	jd.j.trigger(&ipv6, 0, now+confirmDelayNs)
	jd.j.Expire(now+3*confirmDelayNs, false)
	if len(dumps) != 3 {
		t.Errorf("an IPv6 address removal asked for an IPv4 dump: %d dumps", len(dumps))
	}
}

// IPv6 address notifications never name their requester (portid 0): the
// captured request for the same address on the same link is its actor,
// while a removal of another address stays the kernel's.
func TestJoinIPv6AddressCauseWithoutPortid(t *testing.T) {
	jd := newJoined()
	req := event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: event.FamilyInet6, Netns: 7, Portid: 1, Seq: 40,
		Oif: 3, Dst: netip.MustParsePrefix("2001:db8:ff::1/64"), Origin: event.OriginNetlink}
	req.Actor.Tgid, req.Actor.Pid = 305, 305
	jd.j.Request(&req, 0, 0)
	note := event.Event{Op: event.OpDelete, Object: event.ObjectAddr, Family: event.FamilyInet6, Netns: 7,
		Oif: 3, Dst: netip.MustParsePrefix("2001:db8:ff::1/64")}
	jd.j.trigger(&note, 0, 1)
	other := note
	other.Dst = netip.MustParsePrefix("2001:db8:ee::1/64")
	jd.j.trigger(&other, 0, 1)

	route := event.Event{Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet6, Netns: 7, Oif: 3,
		Dst: netip.MustParsePrefix("2001:db8:ff::/64")}
	c := jd.j.cause(&route, 2)
	if c == nil || c.Actor.Tgid != 305 || c.Dst.String() != "2001:db8:ff::1/64" {
		t.Fatalf("cause %+v, want the deletion of 2001:db8:ff::1/64 by pid 305", c)
	}
	if !jd.j.triggers[1].ev.Actor.Kernel {
		t.Errorf("the other address's removal got actor %+v, want the kernel", jd.j.triggers[1].ev.Actor)
	}
}

// The socket capture writes a request's record when the kernel frees the
// request, after its ack was queued: an ack read on another thread can come
// first. It waits for its request, which is then reported with the errno
// and the requester as actor, once, and nothing is counted unconfirmed.
func TestJoinAckBeforeRequest(t *testing.T) {
	jd := newJoined()
	jd.ack(55, 9, 25, 3) // RTM_DELROUTE, ESRCH
	if len(jd.out) != 0 {
		t.Fatalf("the ack was reported before its request could claim it: %+v", jd.out)
	}
	jd.request(requestRecord(100, 55, 9, uint8(event.OpDelete), "10.9.9.0/24"))
	if len(jd.out) != 1 {
		t.Fatalf("got %d events, want 1", len(jd.out))
	}
	ev := jd.out[0]
	if ev.Errno != 3 || ev.Dst.String() != "10.9.9.0/24" || ev.Actor.Tgid != 100 || ev.Table != 254 || ev.Op != event.OpDelete {
		t.Errorf("got %+v, want the request by pid 100, failed with ESRCH", ev)
	}
	jd.j.Expire(pendingTTLNs*2, true)
	if len(jd.out) != 1 || jd.j.stats.Unconfirmed.Load() != 0 || jd.j.stats.AcksParked.Load() != 1 {
		t.Errorf("after expiry: %d events, %d unconfirmed, %d parked; want 1, 0, 1",
			len(jd.out), jd.j.stats.Unconfirmed.Load(), jd.j.stats.AcksParked.Load())
	}
}

// Parked acks are bounded: past the bound the oldest is reported at once.
func TestJoinParkedAcksBounded(t *testing.T) {
	jd := newJoined()
	for i := uint32(0); i < maxParked+5; i++ {
		jd.ack(55, i, 25, 3)
	}
	if len(jd.out) != 5 || len(jd.j.parked) != maxParked {
		t.Fatalf("%d reported, %d parked; want 5 and %d", len(jd.out), len(jd.j.parked), maxParked)
	}
	if jd.out[0].Seq != 0 || jd.out[4].Seq != 4 {
		t.Errorf("reported seqs %d..%d, want the oldest, 0..4", jd.out[0].Seq, jd.out[4].Seq)
	}
	jd.j.Expire(0, true)
	if len(jd.out) != maxParked+5 || len(jd.j.parked) != 0 || len(jd.j.parkOrder) != 0 {
		t.Errorf("after a forced expiry: %d reported, %d parked, %d in order", len(jd.out), len(jd.j.parked), len(jd.j.parkOrder))
	}
}

// TestJoinIgnoresOwnSockets: a notification of a change this process
// requested (a repair) has no captured request; it is dropped, not
// reported once its wait for one ends. Another socket's still is.
func TestJoinIgnoresOwnSockets(t *testing.T) {
	jd := newJoined()
	jd.j.IgnoreOwn(func(netns, portid uint32) bool { return portid == 77 })
	own := notification(77, 1, event.OpAdd, "10.1.0.0/24")
	jd.j.notification(&own, 0, 0)
	other := notification(78, 1, event.OpAdd, "10.2.0.0/24")
	jd.j.notification(&other, 0, 0)
	jd.j.Expire(orphanWaitNs+1, false)
	if len(jd.out) != 1 || jd.out[0].Portid != 78 || jd.out[0].Dst.String() != "10.2.0.0/24" {
		t.Errorf("got %+v, want only the notification of portid 78", jd.out)
	}
}
