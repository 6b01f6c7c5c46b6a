package tier3

import (
	"net/netip"
	"time"

	"github.com/routetrace/routetrace/event"
)

// IPv4 routes removed by the kernel when a link goes down, an address is
// deleted or a nexthop object goes away are flushed by fib_table_flush,
// which sends no RTM_DELROUTE. Tiers 1-2 see the flush; tier 3 only sees
// that a request that can cause one was made. So tier 3 keeps each
// namespace's IPv4 routes, and after such a request asks the kernel for
// them again: what is gone without a notification was flushed.
//
// The dump is requested on the notification socket itself, so its answer
// is queued behind every notification sent before it, and read in order it
// is a consistent cut: a route deleted by a request is removed from the
// cache by its notification before the dump is compared.

type route4Key struct {
	table uint32
	prio  uint32
	dst   [4]byte
	bits  uint8
	tos   uint8
}

type route4Val struct {
	oif   uint32
	nhid  uint32
	mark  uint32 // the dump epoch this route was last seen in
	gw    [4]byte
	proto uint8
	scope uint8
	typ   uint8
	hasGw bool
}

type netnsRoutes struct {
	routes   map[route4Key]route4Val
	portid   uint32 // the listener's: its dump answers carry it
	seq      uint32 // the dump in flight, 0 for none
	epoch    uint32
	due      int64 // when to ask for a dump (monotonic ns), if wantDump
	wantDump bool
	// A flushing request in progress: the dump waits for its ack (or
	// until due), so that it sees the kernel's flush finished.
	waitPortid, waitSeq uint32
	// confirmAt asks for one more dump later, for a removal whose end
	// cannot be seen (the kernel's own, or an ioctl's).
	confirmAt int64
	// resync: notifications were lost, so what this dump lacks may have
	// been removed by anyone: reported without a cause.
	resync bool
}

// ConfirmDelay is when a removal whose completion cannot be seen gets a
// second dump.
const ConfirmDelay = time.Second

const confirmDelayNs = int64(ConfirmDelay)

// kernelSettle lets the notifications of one kernel operation arrive
// before its flush is compared, so that it is blamed on the whole of it.
const kernelSettleNs = int64(200e6)

func route4KeyOf(ev *event.Event) (route4Key, bool) {
	if ev.Object != event.ObjectRoute || ev.Family != event.FamilyInet || !ev.Dst.Addr().Is4() {
		return route4Key{}, false
	}
	return route4Key{table: ev.Table, prio: ev.Priority, dst: ev.Dst.Addr().As4(), bits: uint8(ev.Dst.Bits()), tos: ev.TOS}, true
}

// watchRoutes makes the joiner keep the IPv4 routes of a namespace read
// through a listener with this portid, whose first dump, with seq, is
// already under way.
func (j *Joiner) watchRoutes(netns, portid, seq uint32) {
	j.routes[netns] = &netnsRoutes{routes: make(map[route4Key]route4Val), portid: portid, seq: seq, epoch: 1}
	if seq > j.dumpSeq {
		j.dumpSeq = seq
	}
}

// trackRoute updates the cache from a notification or a dump answer, and
// reports whether ev was a dump answer (not a change to report).
func (j *Joiner) trackRoute(ev *event.Event) bool {
	st := j.routes[ev.Netns]
	if st == nil {
		return false
	}
	k, ok := route4KeyOf(ev)
	if !ok {
		return false
	}
	dump := st.seq != 0 && ev.Portid == st.portid && ev.Seq == st.seq
	if ev.Op == event.OpDelete && !dump {
		delete(st.routes, k)
		return false
	}
	v := route4Val{oif: ev.Oif, nhid: ev.NexthopID, mark: st.epoch, proto: ev.Protocol, scope: ev.Scope, typ: ev.Type}
	if ev.Gateway.Is4() {
		v.gw, v.hasGw = ev.Gateway.As4(), true
	}
	st.routes[k] = v
	return dump
}

// afterTrigger schedules a dump after a change that may have made the
// kernel flush IPv4 routes in ev's namespace.
func (j *Joiner) afterTrigger(ev *event.Event, now int64) {
	st := j.routes[ev.Netns]
	if st == nil || (ev.Object == event.ObjectAddr && ev.Family != event.FamilyInet) {
		return
	}
	if ev.Portid != 0 {
		// Its notification came from inside the request, which may still
		// be flushing: compare once it has completed (its ack), or after
		// completionWait at the latest.
		st.waitPortid, st.waitSeq = ev.Portid, ev.Seq
		st.setDue(now + completionWaitNs)
		return
	}
	// The kernel's own or an ioctl's, whose end cannot be seen: a link's
	// routes are flushed before its notification, an address's after it,
	// and one operation sends several (a link moved away drops its
	// addresses, then itself). Look once the burst has settled, and again
	// later.
	st.setDue(now + kernelSettleNs)
	if ev.Object == event.ObjectAddr {
		st.confirmAt = now + confirmDelayNs
	}
}

func (st *netnsRoutes) setDue(t int64) {
	if !st.wantDump || t < st.due {
		st.due, st.wantDump = t, true
	}
}

// DumpNow takes every dump that is due or waited for now: the tracer is
// stopping, and a flush already made must still be compared.
func (j *Joiner) DumpNow(now int64) {
	for _, st := range j.routes {
		if st.wantDump || st.confirmAt != 0 || st.waitPortid != 0 {
			st.confirmAt = 0
			st.due, st.wantDump = now, true
		}
	}
	j.startDumps(now)
}

// Idle reports whether the joiner waits for nothing: no request, orphan,
// ioctl or dump that a deadline could settle.
func (j *Joiner) Idle() bool {
	if len(j.pending) > 0 || len(j.orphans) > 0 || len(j.ioctls) > 0 || len(j.parked) > 0 || j.Dumping() {
		return false
	}
	for _, st := range j.routes {
		if st.confirmAt != 0 || st.waitPortid != 0 {
			return false
		}
	}
	return true
}

// Dumping reports whether a dump is in flight or due.
func (j *Joiner) Dumping() bool {
	for _, st := range j.routes {
		if st.seq != 0 || st.wantDump {
			return true
		}
	}
	return false
}

// completed is the ack of a request that may have flushed routes: the
// dump it waits for can be taken now.
func (j *Joiner) completed(netns, portid, seq uint32, now int64) {
	st := j.routes[netns]
	if st == nil || st.waitPortid != portid || st.waitSeq != seq {
		return
	}
	st.waitPortid, st.waitSeq = 0, 0
	st.due, st.wantDump = now, true
	j.startDumps(now)
}

// listening: a listener opened in netns (portid is its), and its first
// dump (seq) is under way. For a namespace already watched, the listener
// was replaced after a failure: notifications were lost meanwhile, so the
// dump resynchronises the cache.
func (j *Joiner) listening(netns, portid, seq uint32, now int64) {
	if j.cover&RouteInet == 0 {
		return
	}
	st := j.routes[netns]
	if st == nil {
		j.watchRoutes(netns, portid, seq)
		return
	}
	st.portid, st.seq = portid, seq
	st.epoch++
	st.resync = true
}

// overrun: the kernel dropped notifications of netns, so the cache may be
// stale both ways. Resynchronise from a fresh dump.
func (j *Joiner) overrun(netns uint32, now int64) {
	if st := j.routes[netns]; st != nil {
		st.resync = true
		st.setDue(now)
		j.startDumps(now)
	}
}

// startDumps requests the dumps that are due and not already running.
func (j *Joiner) startDumps(now int64) {
	for netns, st := range j.routes {
		if st.confirmAt != 0 && now >= st.confirmAt {
			st.confirmAt = 0
			st.setDue(now)
		}
		if !st.wantDump || now < st.due || st.seq != 0 {
			continue
		}
		st.waitPortid, st.waitSeq = 0, 0
		j.dumpSeq++
		st.seq, st.due, st.wantDump = j.dumpSeq, 0, false
		st.epoch++
		if err := j.dump(netns, st.seq); err != nil {
			st.seq = 0 // try again with the next request
		}
	}
}

// dumpDone ends the dump of netns with this seq: every cached route it did
// not contain, and no notification re-added, was flushed by the kernel.
func (j *Joiner) dumpDone(netns, portid, seq uint32, now int64) {
	st := j.routes[netns]
	if st == nil || st.seq == 0 || portid != st.portid || seq != st.seq {
		return
	}
	st.seq = 0
	resync := st.resync
	st.resync = false
	for k, v := range st.routes {
		if v.mark == st.epoch {
			continue
		}
		delete(st.routes, k)
		j.reportFlushed(netns, k, v, now, resync)
	}
}

// reportFlushed reports a route the dump no longer has. After an overrun
// (resync) its removal may have been anyone's: it is reported with an
// unknown actor and origin, never blamed on a cause.
func (j *Joiner) reportFlushed(netns uint32, k route4Key, v route4Val, now int64, resync bool) {
	out := &j.scratch
	*out = event.Event{
		Time:      time.Now(),
		Op:        event.OpDelete,
		Object:    event.ObjectRoute,
		Family:    event.FamilyInet,
		Origin:    event.OriginKernel,
		Attach:    event.AttachTracepoint,
		Path:      event.PathFibTableFlush,
		Dst:       netip.PrefixFrom(netip.AddrFrom4(k.dst), int(k.bits)),
		Table:     k.table,
		Priority:  k.prio,
		TOS:       k.tos,
		Protocol:  v.proto,
		Scope:     v.scope,
		Type:      v.typ,
		Oif:       v.oif,
		NexthopID: v.nhid,
		Netns:     netns,
		Actor:     event.Actor{Kernel: true},
	}
	if v.hasGw {
		out.Gateway = netip.AddrFrom4(v.gw)
	}
	if resync {
		out.Origin, out.Path, out.Actor = event.OriginUnknown, event.PathNone, event.Actor{}
		j.emit(out)
		return
	}
	if t := j.cause(out, now); t != nil {
		out.Time = t.Time // it happened inside that request
		out.Cause = causeOf(t)
	}
	j.emit(out)
}

// dumpFailed abandons a dump the kernel refused: nothing is compared.
func (j *Joiner) dumpFailed(netns, portid, seq uint32) {
	if st := j.routes[netns]; st != nil && st.seq != 0 && portid == st.portid && seq == st.seq {
		st.seq = 0
	}
}
