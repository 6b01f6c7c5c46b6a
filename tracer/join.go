package tracer

import (
	"github.com/routetrace/routetrace/event"
)

// Tier 3 sees requests at the syscalls and the kernel's answers as
// rtnetlink notifications; the joiner pairs them by (netns, portid, seq),
// so that a reported change is one the kernel made, described as the kernel
// describes it, with the actor taken from the request.

const (
	// orphanWait is how long a notification waits for its request record:
	// the ring buffer and the notification socket are read independently.
	orphanWaitNs = int64(100e6)
	// pendingTTL bounds how long a request waits for its notification or
	// error; requests that got neither (a netns routetrace does not listen
	// to, a no-op) are dropped and counted.
	pendingTTLNs = int64(5e9)
	// triggerTTL is how long an address or link request stays a candidate
	// cause for kernel-internal removals in its netns.
	triggerTTLNs = int64(2e9)
	maxTriggers  = 16
)

type reqKey struct {
	netns, portid, seq uint32
	object             event.Object
}

type portKey struct{ netns, portid uint32 }

// pendingReq keeps a request as its raw record, half the size of the
// decoded event: a flush of 100k routes can have many in flight.
type pendingReq struct {
	rec      record
	deadline int64
}

type pendingIoctl struct {
	ev       event.Event
	deadline int64
}

type orphan struct {
	ev       event.Event
	key      reqKey
	deadline int64
	done     bool
}

type trigger struct {
	ev   event.Event
	seen int64
}

type joiner struct {
	cover     coverage
	pending   map[reqKey]pendingReq
	lastActor map[portKey]event.Actor
	orphans   []orphan // FIFO by arrival
	orphanIdx map[reqKey]int
	orphanOff int // index of orphans[0] in arrival numbering
	ioctls    []pendingIoctl
	triggers  []trigger
	emit      func(*event.Event)
	stats     *Stats
	clock     *clock
	scratch   event.Event
	req       event.Event // a pending request, decoded again

	// netns are the namespaces listened to: tier 3 reports only their
	// changes, failures included (nil: all, for tests).
	netns map[uint32]bool

	// IPv4 route caches of the namespaces listened to (see routes4.go).
	routes  map[uint32]*netnsRoutes
	dump    func(netns, seq uint32) error
	dumpSeq uint32
}

func newJoiner(cover coverage, c *clock, emit func(*event.Event), stats *Stats) *joiner {
	return &joiner{
		cover:     cover,
		clock:     c,
		pending:   make(map[reqKey]pendingReq),
		lastActor: make(map[portKey]event.Actor),
		orphanIdx: make(map[reqKey]int),
		emit:      emit,
		stats:     stats,
		routes:    make(map[uint32]*netnsRoutes),
		dump:      func(uint32, uint32) error { return nil },
	}
}

func keyOf(ev *event.Event) reqKey {
	return reqKey{netns: ev.Netns, portid: ev.Portid, seq: ev.Seq, object: ev.Object}
}

// request handles a request record r (kind REQUEST), decoded into ev.
func (j *joiner) request(r *record, ev *event.Event, now int64) {
	flags := r.Flags
	if j.netns != nil && !j.netns[ev.Netns] {
		return // its successes are not seen: report none of it
	}
	if ev.Origin == event.OriginIoctl {
		j.ioctl(ev, now)
		return
	}
	j.lastActor[portKey{ev.Netns, ev.Portid}] = ev.Actor
	if flags&flagTruncated != 0 && ev.Object == event.ObjectUnknown {
		return // the rest of a long batch: attributed by portid
	}
	switch ev.Object {
	case event.ObjectAddr, event.ObjectLink:
		if ev.Op == event.OpDelete || flags&flagLinkDown != 0 {
			j.addTrigger(ev, now)
			j.scheduleDump(ev.Netns, now)
		}
		return
	case event.ObjectNexthop:
		if ev.Op == event.OpDelete {
			j.addTrigger(ev, now)
			j.scheduleDump(ev.Netns, now)
		}
	}
	if !j.cover.covers(ev.Object, ev.Family) {
		return
	}
	k := keyOf(ev)
	if i, ok := j.orphanIdx[k]; ok {
		o := &j.orphans[i-j.orphanOff]
		o.done = true
		delete(j.orphanIdx, k)
		j.merge(&o.ev, ev)
		return
	}
	j.pending[k] = pendingReq{rec: *r, deadline: now + pendingTTLNs}
}

// ack handles an NLMSG_ERROR record: the request failed with ev.Errno.
func (j *joiner) ack(ev *event.Event, nlmsgType uint16) {
	ev.Object = objectOfType(nlmsgType)
	k := keyOf(ev)
	p, ok := j.pending[k]
	if !ok {
		return
	}
	delete(j.pending, k)
	req := j.decodePending(&p)
	req.Errno = ev.Errno
	j.emit(req)
}

// ioctl handles a completed route ioctl: failures are reported at once,
// successes wait for the kernel's notification (portid 0) to confirm them.
func (j *joiner) ioctl(ev *event.Event, now int64) {
	if !j.cover.covers(ev.Object, ev.Family) {
		return
	}
	if ev.Errno != 0 {
		j.emit(ev)
		return
	}
	for i := range j.orphans {
		o := &j.orphans[i]
		if !o.done && o.key.portid == 0 && ioctlMatches(ev, &o.ev) {
			o.done = true
			j.merge(&o.ev, ev)
			return
		}
	}
	j.ioctls = append(j.ioctls, pendingIoctl{ev: *ev, deadline: now + pendingTTLNs})
}

func ioctlMatches(req, note *event.Event) bool {
	return req.Netns == note.Netns && req.Family == note.Family && req.Dst == note.Dst &&
		((req.Op == event.OpDelete) == (note.Op == event.OpDelete))
}

// notification handles one rtnetlink notification decoded into ev.
func (j *joiner) notification(ev *event.Event, now int64) {
	if !j.cover.covers(ev.Object, ev.Family) {
		return
	}
	if j.trackRoute(ev) {
		return // an answer to our own dump, not a change
	}
	k := keyOf(ev)
	if ev.Portid != 0 {
		if p, ok := j.pending[k]; ok {
			delete(j.pending, k)
			j.merge(ev, j.decodePending(&p))
			return
		}
	} else {
		for i := range j.ioctls {
			if ioctlMatches(&j.ioctls[i].ev, ev) {
				req := j.ioctls[i].ev
				j.ioctls = append(j.ioctls[:i], j.ioctls[i+1:]...)
				j.merge(ev, &req)
				return
			}
		}
	}
	j.orphans = append(j.orphans, orphan{ev: *ev, key: k, deadline: now + orphanWaitNs})
	if ev.Portid != 0 {
		j.orphanIdx[k] = j.orphanOff + len(j.orphans) - 1
	}
}

// merge reports the kernel's notification note with the actor, origin
// (netlink or ioctl) and op of its request req.
func (j *joiner) merge(note, req *event.Event) {
	out := &j.scratch
	*out = *note
	out.Time, out.Actor, out.Origin, out.Path = req.Time, req.Actor, req.Origin, req.Path
	out.Attach = event.AttachTracepoint
	if note.Op != event.OpDelete {
		out.Op = req.Op
	}
	j.emit(out)
}

func (j *joiner) decodePending(p *pendingReq) *event.Event {
	decodeRecord(j.clock, &p.rec, &j.req)
	return &j.req
}

func (j *joiner) addTrigger(ev *event.Event, now int64) {
	if len(j.triggers) == maxTriggers {
		copy(j.triggers, j.triggers[1:])
		j.triggers = j.triggers[:maxTriggers-1]
	}
	j.triggers = append(j.triggers, trigger{ev: *ev, seen: now})
}

// expire reports orphans whose request never came and drops stale
// requests. With force, everything still waiting is settled now.
func (j *joiner) expire(now int64, force bool) {
	j.startDumps(now)
	n := 0
	for n < len(j.orphans) && (force || j.orphans[n].deadline <= now) {
		o := &j.orphans[n]
		if !o.done {
			// A later notification with the same key may own the index.
			if i, ok := j.orphanIdx[o.key]; ok && i == j.orphanOff+n {
				delete(j.orphanIdx, o.key)
			}
			j.settleOrphan(&o.ev, now)
		}
		n++
	}
	if n > 0 {
		j.orphans = append(j.orphans[:0], j.orphans[n:]...)
		j.orphanOff += n
	}
	for k, p := range j.pending {
		if force || p.deadline <= now {
			delete(j.pending, k)
			j.stats.Unconfirmed.Add(1)
		}
	}
	kept := j.ioctls[:0]
	for _, p := range j.ioctls {
		if force || p.deadline <= now {
			// Confirmed by the syscall's result, but no notification was
			// seen (a netns routetrace does not listen to): report it.
			ev := p.ev
			j.emit(&ev)
			continue
		}
		kept = append(kept, p)
	}
	j.ioctls = kept
}

// settleOrphan reports a notification no captured request claimed: by the
// socket's last known owner, or as the kernel's own doing.
func (j *joiner) settleOrphan(ev *event.Event, now int64) {
	out := &j.scratch
	*out = *ev
	out.Attach = event.AttachTracepoint
	if ev.Portid != 0 {
		out.Origin = event.OriginNetlink
		if a, ok := j.lastActor[portKey{ev.Netns, ev.Portid}]; ok {
			out.Actor = a
		}
		j.emit(out)
		return
	}
	out.Origin = event.OriginKernel
	out.Path = event.PathNotification
	out.Actor = event.Actor{Kernel: true}
	if t := j.cause(ev, now); t != nil {
		out.Cause = causeOf(t)
	}
	j.emit(out)
}

// causeOf describes the request t as the cause of a kernel removal.
func causeOf(t *event.Event) event.Cause {
	c := event.Cause{Valid: true, Object: t.Object, Op: t.Op, Ifindex: t.Oif, Actor: t.Actor}
	if t.Object == event.ObjectAddr {
		c.Prefix = t.Dst
	}
	return c
}

// cause finds the most recent request in ev's netns that makes the kernel
// remove routing state by itself.
func (j *joiner) cause(ev *event.Event, now int64) *event.Event {
	for i := len(j.triggers) - 1; i >= 0; i-- {
		t := &j.triggers[i]
		if now-t.seen > triggerTTLNs {
			break
		}
		if t.ev.Netns == ev.Netns {
			return &t.ev
		}
	}
	return nil
}

func objectOfType(t uint16) event.Object {
	switch t {
	case 24, 25:
		return event.ObjectRoute
	case 32, 33:
		return event.ObjectRule
	case 104, 105:
		return event.ObjectNexthop
	case 20, 21:
		return event.ObjectAddr
	case 16, 17, 19:
		return event.ObjectLink
	}
	return event.ObjectUnknown
}
