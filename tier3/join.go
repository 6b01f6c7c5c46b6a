// Package tier3 is routetrace's tier 3: the changes captured at the
// syscalls (requests, failed acks) joined with the kernel's rtnetlink
// notifications, the IPv4 route caches that reveal the kernel's silent
// flushes, and the notification listeners of every traced namespace.
//
// Tier 3 sees requests at the syscalls and the kernel's answers as
// rtnetlink notifications; the joiner pairs them by (netns, portid, seq),
// so that a reported change is one the kernel made, described as the
// kernel describes it, with the actor taken from the request.
package tier3

import (
	"github.com/routetrace/routetrace/event"
)

const (
	// orphanWait is how long a notification waits for its request record:
	// the ring buffer and the notification socket are read independently,
	// and on a loaded node (200 namespaces changing at once on 2 cores)
	// one can lag the other by more than 100 ms.
	orphanWaitNs = int64(500e6)
	// pendingTTL bounds how long a request waits for its notification or
	// error; requests that got neither (a netns routetrace does not listen
	// to, a no-op) are dropped and counted.
	pendingTTLNs = int64(5e9)
	// triggerTTL is how long an address or link request stays a candidate
	// cause for kernel-internal removals in its netns.
	triggerTTLNs = int64(2e9)
	maxTriggers  = 64
	// maxPending bounds the requests waiting for their notification: at
	// 70k deletes/s a 5 s wait would otherwise hold 350k of them. The
	// oldest is evicted first, and counted.
	maxPending = 1 << 15
	// actorTTL and maxActors bound the portid -> last actor table that
	// attributes the messages past a capture limit: an entry older than
	// this may belong to another process that reused the portid.
	actorTTLNs = int64(60e9)
	maxActors  = 4096
	// completionWait is how long a flushing request's dump waits for the
	// ack that says the request completed, before it is taken anyway (a
	// requester that asked for no ack, or read it with read(2)).
	completionWaitNs = int64(1e9)
	// ackParkWait is how long a failure ack waits for its request record.
	// The socket capture writes a request's record when the kernel frees
	// the request, after its ack was queued: a requester reading acks on
	// another thread can have the ack's record written first. Both are in
	// the one ring buffer, so the request follows within microseconds;
	// the wait only has to outlast one read of the ring. maxParked bounds
	// the acks waiting (past it the oldest is reported as unmatched).
	ackParkWaitNs = int64(200e6)
	maxParked     = 1024
)

type reqKey struct {
	netns, portid, seq uint32
	object             event.Object
}

type portKey struct{ netns, portid uint32 }

// pendingReq keeps a request (netlink or ioctl) until its notification or
// error.
type pendingReq struct {
	ev       event.Event
	deadline int64
}

type orphan struct {
	ev       event.Event
	key      reqKey
	hash     uint32 // OriginHash of a notification with no requester
	deadline int64
	done     bool
}

// A trigger is an address or link change, or a nexthop removal, that the
// kernel confirmed with a notification and that makes it remove routes by
// itself; ev carries the actor of its request when it was captured.
type trigger struct {
	ev   event.Event
	seen int64
	hash uint32 // OriginHash of a notification with no requester
}

// parkedAck is a failure ack whose request record has not come yet.
type parkedAck struct {
	ev                    event.Event
	nlmsgType, nlmsgFlags uint16
	deadline              int64
}

type lastActor struct {
	actor event.Actor
	seen  int64
}

// Joiner pairs tier 3's requests with the kernel's notifications. It is
// not safe for concurrent use: one goroutine feeds it everything.
type Joiner struct {
	cover     Coverage
	pending   map[reqKey]pendingReq
	order     []reqKey // pending's keys, oldest first (deadline order)
	orderHead int
	actors    map[portKey]lastActor
	orphans   []orphan // FIFO by arrival
	orphanIdx map[reqKey]int
	orphanOff int // index of orphans[0] in arrival numbering
	ioctls    []pendingReq
	parked    map[reqKey]parkedAck // failure acks that came before their request
	parkOrder []reqKey             // parked's keys, oldest first
	triggers  []trigger
	recent    []trigger // address, link and nexthop requests, for their notifications
	origins   []origin  // ioctls that made notifications not read yet (origin.go)
	emit      func(*event.Event)
	stats     *Stats
	scratch   event.Event
	// unlistened is told of requests in namespaces not listened to.
	unlistened func(*event.Event)
	// onLink learns interface names from link notifications.
	onLink func(netns, ifindex uint32, name event.Name)

	// listened says which namespaces are listened to: tier 3 reports only
	// their changes, failures included (nil: all, for tests).
	listened func(netns uint32) bool
	// own says which sockets are this process's (nil: none): their
	// requests are not captured, and their notifications not reported.
	own func(netns, portid uint32) bool

	// ringGate: orphans settle only once the ring buffer was read past
	// their deadline (RingReadAt), not only once the deadline passed.
	// ringReadAt is the latest such time (CLOCK_MONOTONIC ns).
	ringGate   bool
	ringReadAt int64

	// IPv4 route caches of the namespaces listened to (see routes4.go).
	routes  map[uint32]*netnsRoutes
	dump    func(netns, seq uint32) error
	dumpSeq uint32
}

// NewJoiner returns a joiner reporting the changes of the objects in cover
// to emit (its event is valid only during the call), counting losses in
// stats. onLink, if not nil, is told every interface name notified.
func NewJoiner(cover Coverage, emit func(*event.Event), stats *Stats, onLink func(netns, ifindex uint32, name event.Name)) *Joiner {
	return &Joiner{
		cover:     cover,
		onLink:    onLink,
		pending:   make(map[reqKey]pendingReq),
		actors:    make(map[portKey]lastActor),
		orphanIdx: make(map[reqKey]int),
		parked:    make(map[reqKey]parkedAck),
		emit:      emit,
		stats:     stats,
		routes:    make(map[uint32]*netnsRoutes),
		dump:      func(uint32, uint32) error { return nil },
	}
}

func keyOf(ev *event.Event) reqKey {
	return reqKey{netns: ev.Netns, portid: ev.Portid, seq: ev.Seq, object: ev.Object}
}

// Request handles a request captured at the syscalls (a REQUEST record
// with its RT_F_* flags), decoded into ev.
func (j *Joiner) Request(ev *event.Event, flags uint16, now int64) {
	if j.listened != nil && !j.listened(ev.Netns) {
		// Its success would not be seen: report none of it. When every
		// namespace is followed, that is a gap, and the namespace is
		// opened now.
		if j.unlistened != nil {
			j.stats.Unlistened.Add(1)
			j.unlistened(ev)
		}
		return
	}
	if ev.Origin == event.OriginIoctl {
		j.ioctl(ev, now)
		return
	}
	j.noteActor(ev, now)
	if flags&FlagTruncated != 0 && ev.Object == event.ObjectUnknown {
		// The capture stopped at a limit: the rest of the batch is
		// attributed by portid, and the summary counts it.
		j.stats.Truncated.Add(1)
		return
	}
	switch ev.Object {
	case event.ObjectAddr, event.ObjectLink:
		// Kept only to name the actor of the notification that confirms
		// it: a request that failed causes nothing.
		if ev.Op == event.OpDelete || flags&FlagLinkDown != 0 {
			j.addRecent(ev, now)
		}
		return
	case event.ObjectNexthop:
		if ev.Op == event.OpDelete {
			j.addRecent(ev, now)
		}
	}
	if !j.cover.Covers(ev.Object, ev.Family) {
		return
	}
	k := keyOf(ev)
	if a, ok := j.parked[k]; ok {
		// Its failure ack came first (see ackParkWait).
		delete(j.parked, k)
		ev.Errno = a.ev.Errno
		j.emit(ev)
		return
	}
	if i, ok := j.orphanIdx[k]; ok {
		o := &j.orphans[i-j.orphanOff]
		o.done = true
		delete(j.orphanIdx, k)
		j.merge(&o.ev, ev)
		return
	}
	j.addPending(ev, now)
}

// noteActor remembers who owns a socket, for the messages of a batch past
// a capture limit. The table is bounded: stale entries go first.
func (j *Joiner) noteActor(ev *event.Event, now int64) {
	k := portKey{ev.Netns, ev.Portid}
	if _, ok := j.actors[k]; !ok && len(j.actors) >= maxActors {
		for key, a := range j.actors {
			if now-a.seen > actorTTLNs {
				delete(j.actors, key)
			}
		}
		for key := range j.actors { // still full: drop arbitrary ones
			if len(j.actors) < maxActors*3/4 {
				break
			}
			delete(j.actors, key)
		}
	}
	j.actors[k] = lastActor{actor: ev.Actor, seen: now}
}

// actorOf is the last actor seen on a socket, if recent enough to trust.
func (j *Joiner) actorOf(netns, portid uint32, now int64) (event.Actor, bool) {
	a, ok := j.actors[portKey{netns, portid}]
	if !ok || now-a.seen > actorTTLNs {
		return event.Actor{}, false
	}
	return a.actor, true
}

// addPending keeps a request until its notification or error, within a
// bound: past it the oldest request is evicted and counted.
func (j *Joiner) addPending(ev *event.Event, now int64) {
	k := keyOf(ev)
	j.pending[k] = pendingReq{ev: *ev, deadline: now + pendingTTLNs}
	j.order = append(j.order, k)
	for len(j.pending) > maxPending && j.orderHead < len(j.order) {
		old := j.order[j.orderHead]
		j.orderHead++
		if _, ok := j.pending[old]; ok {
			delete(j.pending, old)
			j.stats.Evicted.Add(1)
		}
	}
	j.compactOrder()
}

// compactOrder drops the consumed head of order once it is most of it.
func (j *Joiner) compactOrder() {
	if j.orderHead > 1024 && j.orderHead*2 > len(j.order) {
		n := copy(j.order, j.order[j.orderHead:])
		j.order = j.order[:n]
		j.orderHead = 0
	}
}

// Ack handles an NLMSG_ERROR read back by the requester (an ACK record,
// decoded into ev, with its flags and the failed request's header): with
// an errno the request failed; without, a flushing request has completed.
func (j *Joiner) Ack(ev *event.Event, flags, nlmsgType, nlmsgFlags uint16, now int64) {
	if j.listened != nil && !j.listened(ev.Netns) {
		return
	}
	if flags&FlagTruncated != 0 && ev.Object == event.ObjectUnknown {
		j.stats.Truncated.Add(1) // more acks in one read than one pass scans
		return
	}
	ev.Object = objectOfType(nlmsgType)
	if ev.Errno == 0 {
		j.completed(ev.Netns, ev.Portid, ev.Seq, now)
		return
	}
	k := keyOf(ev)
	p, ok := j.pending[k]
	if !ok {
		j.park(ev, nlmsgType, nlmsgFlags, now)
		return
	}
	delete(j.pending, k)
	p.ev.Errno = ev.Errno
	if !j.cover.Covers(p.ev.Object, p.ev.Family) {
		return // an address or link request that failed: causes nothing
	}
	j.emit(&p.ev)
}

// park keeps a failure ack whose request record has not been read yet,
// briefly (ackParkWait), so that the request's record still gets its
// errno; acks that wait in vain are reported as unmatched.
func (j *Joiner) park(ev *event.Event, nlmsgType, nlmsgFlags uint16, now int64) {
	k := keyOf(ev)
	if old, ok := j.parked[k]; ok {
		// The same request failed twice (a reused seq) before either
		// request came: the first is reported now.
		delete(j.parked, k)
		j.unmatchedFailure(&old.ev, old.nlmsgType, old.nlmsgFlags)
	}
	j.stats.AcksParked.Add(1)
	j.parked[k] = parkedAck{ev: *ev, nlmsgType: nlmsgType, nlmsgFlags: nlmsgFlags, deadline: now + ackParkWaitNs}
	j.parkOrder = append(j.parkOrder, k)
	if len(j.parked) > maxParked {
		j.expireParked(0, true, 1)
	}
}

// expireParked reports the parked acks due by now (all with force), at
// most limit of them when limit > 0, oldest first.
func (j *Joiner) expireParked(now int64, force bool, limit int) {
	n, done := 0, 0
	for ; n < len(j.parkOrder); n++ {
		if limit > 0 && done == limit {
			break
		}
		k := j.parkOrder[n]
		a, ok := j.parked[k]
		if !ok {
			continue // claimed by its request
		}
		if !force && a.deadline > now {
			break
		}
		delete(j.parked, k)
		j.unmatchedFailure(&a.ev, a.nlmsgType, a.nlmsgFlags)
		done++
	}
	j.parkOrder = append(j.parkOrder[:0], j.parkOrder[n:]...)
}

// unmatchedFailure reports a failure whose request was not captured one by
// one (past a capture limit): what the ack says, with the actor that read
// it, rather than nothing.
func (j *Joiner) unmatchedFailure(ev *event.Event, nlmsgType, nlmsgFlags uint16) {
	switch ev.Object {
	case event.ObjectRoute:
		if !j.cover.Covers(event.ObjectRoute, event.FamilyInet) || !j.cover.Covers(event.ObjectRoute, event.FamilyInet6) {
			return // the family is unknown: tiers 1-2 may report it
		}
	case event.ObjectRule, event.ObjectNexthop:
		if !j.cover.Covers(ev.Object, 0) {
			return
		}
	default:
		return
	}
	switch nlmsgType {
	case 24, 32, 104: // RTM_NEWROUTE, RTM_NEWRULE, RTM_NEWNEXTHOP
		ev.Op = event.OpAdd
		if nlmsgFlags&0x100 != 0 { // NLM_F_REPLACE
			ev.Op = event.OpReplace
		}
	default:
		ev.Op = event.OpDelete
	}
	ev.Origin, ev.Attach = event.OriginNetlink, event.AttachTracepoint
	j.emit(ev)
}

// ioctl handles a completed route ioctl: failures are reported at once,
// successes wait for the kernel's notification (portid 0) to confirm them.
func (j *Joiner) ioctl(ev *event.Event, now int64) {
	if !j.cover.Covers(ev.Object, ev.Family) {
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
	j.ioctls = append(j.ioctls, pendingReq{ev: *ev, deadline: now + pendingTTLNs})
}

func ioctlMatches(req, note *event.Event) bool {
	return req.Netns == note.Netns && req.Family == note.Family && req.Dst == note.Dst &&
		((req.Op == event.OpDelete) == (note.Op == event.OpDelete))
}

// notification handles one route, rule or nexthop notification.
func (j *Joiner) notification(ev *event.Event, hash uint32, now int64) {
	if !j.cover.Covers(ev.Object, ev.Family) {
		return
	}
	if j.trackRoute(ev) {
		return // an answer to our own dump, not a change
	}
	if ev.Portid != 0 && j.own != nil && j.own(ev.Netns, ev.Portid) {
		return // our own change (a repair): its request was not captured either
	}
	k := keyOf(ev)
	if ev.Portid != 0 {
		if p, ok := j.pending[k]; ok {
			delete(j.pending, k)
			j.merge(ev, &p.ev)
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
	j.orphans = append(j.orphans, orphan{ev: *ev, key: k, hash: hash, deadline: now + orphanWaitNs})
	if ev.Portid != 0 {
		j.orphanIdx[k] = j.orphanOff + len(j.orphans) - 1
	}
}

// trigger handles the kernel's notification of an address removal, a link
// going down or away, or a nexthop removal: the kernel may have removed
// routes by itself, IPv4 ones without a word. The actor is its request's,
// when captured; a request that failed sent no notification, so it never
// becomes a cause.
func (j *Joiner) trigger(ev *event.Event, hash uint32, now int64) {
	t := trigger{ev: *ev, seen: now, hash: hash}
	t.ev.Actor, t.ev.Origin = event.Actor{}, event.OriginUnknown
	if ev.Portid == 0 {
		t.ev.Actor.Kernel, t.ev.Origin = true, event.OriginKernel
	}
	for i := len(j.recent) - 1; i >= 0; i-- {
		if r := &j.recent[i]; now-r.seen <= triggerTTLNs && requestConfirmedBy(&r.ev, ev) {
			t.ev.Actor, t.ev.Origin, t.ev.Time = r.ev.Actor, r.ev.Origin, r.ev.Time
			break
		}
	}
	if t.ev.Origin == event.OriginUnknown {
		if a, ok := j.actorOf(ev.Netns, ev.Portid, now); ok {
			t.ev.Actor, t.ev.Origin = a, event.OriginNetlink
		}
	}
	if ev.Portid == 0 && t.ev.Origin == event.OriginKernel {
		if o, ok := j.takeOrigin(ev.Netns, hash, now); ok {
			t.ev.Actor, t.ev.Origin = o.actor, event.OriginIoctl
		}
	}
	j.triggers = appendBounded(j.triggers, t, maxTriggers)
	j.afterTrigger(ev, now)
}

// addRecent keeps an address, link or nexthop request for the notification
// that confirms it; one that came first gets its actor now (the ring
// buffer and the sockets are read independently).
func (j *Joiner) addRecent(ev *event.Event, now int64) {
	j.recent = appendBounded(j.recent, trigger{ev: *ev, seen: now}, maxTriggers)
	for i := len(j.triggers) - 1; i >= 0; i-- {
		t := &j.triggers[i]
		if now-t.seen > triggerTTLNs {
			break
		}
		if t.ev.Origin != event.OriginNetlink && requestConfirmedBy(ev, &t.ev) {
			t.ev.Actor, t.ev.Origin, t.ev.Time = ev.Actor, ev.Origin, ev.Time
			return
		}
	}
}

// requestConfirmedBy reports whether notification n confirms request r:
// the same request (portid, seq), or, when the kernel's notification names
// no requester (links before 6.3, IPv6 addresses always), the same change.
func requestConfirmedBy(r, n *event.Event) bool {
	if r.Netns != n.Netns || r.Object != n.Object {
		return false
	}
	if n.Portid != 0 {
		return r.Portid == n.Portid && r.Seq == n.Seq
	}
	switch n.Object {
	case event.ObjectLink:
		return r.Oif == n.Oif && (n.Op != event.OpDelete || r.Op == event.OpDelete)
	case event.ObjectNexthop:
		return r.NexthopID == n.NexthopID
	case event.ObjectAddr:
		// The same address on the same link: a lifetime ending at the
		// very moment a request removes it is not worth a guess.
		return r.Oif == n.Oif && r.Dst == n.Dst && r.Dst.IsValid()
	}
	return false
}

// appendBounded appends v, first dropping the oldest element when s holds
// limit already.
func appendBounded[T any](s []T, v T, limit int) []T {
	if len(s) >= limit {
		copy(s, s[1:])
		s = s[:limit-1]
	}
	return append(s, v)
}

// merge reports the kernel's notification note with the actor, origin
// (netlink or ioctl) and op of its request req.
func (j *Joiner) merge(note, req *event.Event) {
	out := &j.scratch
	*out = *note
	out.Time, out.Actor, out.Origin, out.Path = req.Time, req.Actor, req.Origin, req.Path
	out.Attach = event.AttachTracepoint
	if note.Op != event.OpDelete {
		out.Op = req.Op
	}
	j.emit(out)
}

// maxRingLag bounds how long past its deadline an orphan waits for the
// ring buffer to be read (see WaitForRing): a reader that never catches up
// must not hold every kernel-made change back.
const maxRingLagNs = int64(2e9)

// WaitForRing makes an orphan wait, past its deadline, until the ring
// buffer has been read up to that deadline (RingReadAt). Its request or
// origin record (who made the ioctl) is in the ring buffer, written before
// the notification reached the listener; a ring buffer reader that lags
// the sockets, woken late or starved of CPU, would otherwise see the
// change settled as the kernel's own, with no actor. Past maxRingLag it
// settles anyway.
func (j *Joiner) WaitForRing() { j.ringGate = true }

// RingReadAt says every ring buffer record written before at (monotonic
// ns) has been handed to the joiner.
func (j *Joiner) RingReadAt(at int64) { j.ringReadAt = max(j.ringReadAt, at) }

// OrphansDue reports whether a notification's wait for its request ended
// by now: the caller then has the ring buffer read (see WaitForRing).
func (j *Joiner) OrphansDue(now int64) bool {
	return len(j.orphans) > 0 && j.orphans[0].deadline <= now && j.ringReadAt < j.orphans[0].deadline
}

// Expire reports orphans whose request never came and drops stale
// requests. With force, everything still waiting is settled now.
func (j *Joiner) Expire(now int64, force bool) {
	j.startDumps(now)
	j.expireOrigins(now)
	j.expireParked(now, force, 0)
	settleBy := now
	if j.ringGate {
		settleBy = min(now, max(j.ringReadAt, now-maxRingLagNs))
	}
	n := 0
	for n < len(j.orphans) && (force || j.orphans[n].deadline <= settleBy) {
		o := &j.orphans[n]
		if !o.done {
			// A later notification with the same key may own the index.
			if i, ok := j.orphanIdx[o.key]; ok && i == j.orphanOff+n {
				delete(j.orphanIdx, o.key)
			}
			j.settleOrphan(&o.ev, o.hash, now)
		}
		n++
	}
	if n > 0 {
		j.orphans = append(j.orphans[:0], j.orphans[n:]...)
		j.orphanOff += n
	}
	for j.orderHead < len(j.order) {
		k := j.order[j.orderHead]
		p, ok := j.pending[k]
		if ok && !force && p.deadline > now {
			break
		}
		j.orderHead++
		if ok && (force || p.deadline <= now) {
			delete(j.pending, k)
			if k.object != event.ObjectAddr && k.object != event.ObjectLink {
				// Nothing confirmed or refused it: a netns not listened
				// to, a no-op, or an ack read where it is not captured.
				j.stats.Unconfirmed.Add(1)
			}
		}
	}
	j.compactOrder()
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
func (j *Joiner) settleOrphan(ev *event.Event, hash uint32, now int64) {
	out := &j.scratch
	*out = *ev
	out.Attach = event.AttachTracepoint
	if ev.Portid != 0 {
		out.Origin = event.OriginNetlink
		if a, ok := j.actorOf(ev.Netns, ev.Portid, now); ok {
			out.Actor = a
		}
		j.emit(out)
		return
	}
	if o, ok := j.takeOrigin(ev.Netns, hash, now); ok {
		// route(8): the ioctl's task, recorded as it made the change.
		out.Origin, out.Actor = event.OriginIoctl, o.actor
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

// causeOf describes the trigger t as the cause of a kernel removal.
func causeOf(t *event.Event) event.Cause {
	c := event.Cause{Valid: true, Object: t.Object, Op: t.Op, Ifindex: t.Oif, Actor: t.Actor}
	if t.Object == event.ObjectLink && t.Op != event.OpDelete {
		c.Op = event.OpReplace // set down, not deleted
	}
	if t.Object == event.ObjectAddr {
		c.Prefix = t.Dst
	}
	if t.Object == event.ObjectNexthop {
		c.Ifindex = 0
	}
	return c
}

// cause finds the change that made the kernel remove ev: the newest recent
// trigger in ev's namespace that touches it (its link, the subnet of its
// address, or its nexthop object). None matching: no cause, never a guess.
func (j *Joiner) cause(ev *event.Event, now int64) *event.Event {
	var best *event.Event
	bestRank := 0
	for i := len(j.triggers) - 1; i >= 0; i-- {
		t := &j.triggers[i]
		if now-t.seen > triggerTTLNs {
			break
		}
		if t.ev.Netns != ev.Netns {
			continue
		}
		// A request outranks the kernel's own removals it set off (a
		// link set down drops its IPv6 addresses, notified first); then
		// an address whose subnet holds the route outranks one that
		// only shares its link; among the kernel's, a link outranks the
		// addresses it dropped; then the newest.
		rank := triggerTouches(&t.ev, ev)
		if rank == 0 {
			continue
		}
		if !t.ev.Actor.Kernel {
			rank += 4
		} else if t.ev.Object == event.ObjectLink {
			rank++
		}
		if rank > bestRank {
			best, bestRank = &t.ev, rank
		}
	}
	return best
}

// triggerTouches says whether removing t can have removed route ev: 0 no,
// 1 through the link they share, 2 through the address's subnet, which
// holds the route's destination or gateway.
func triggerTouches(t, ev *event.Event) int {
	switch t.Object {
	case event.ObjectLink:
		if t.Oif != 0 && t.Oif == ev.Oif {
			return 1
		}
	case event.ObjectAddr:
		// An address removal removes routes of its own family only.
		if t.Family != ev.Family {
			return 0
		}
		// A route through a gateway in the address's subnet, or the
		// address's own prefix, local and broadcast routes.
		p := t.Dst.Masked()
		if p.IsValid() && ((ev.Gateway.IsValid() && p.Contains(ev.Gateway)) ||
			(ev.Dst.IsValid() && p.Contains(ev.Dst.Addr()))) {
			return 2
		}
		if t.Oif != 0 && t.Oif == ev.Oif {
			return 1
		}
	case event.ObjectNexthop:
		if t.NexthopID != 0 && t.NexthopID == ev.NexthopID {
			return 2
		}
	}
	return 0
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

// Note passes one note from the listeners to the joiner.
func (j *Joiner) Note(n *Note, now int64) {
	ev := &n.Ev
	switch n.Kind {
	case NoteDumpEnd:
		j.dumpDone(ev.Netns, ev.Portid, ev.Seq, now)
	case NoteDumpFailed:
		j.dumpFailed(ev.Netns, ev.Portid, ev.Seq)
	case NoteOverrun:
		j.overrun(ev.Netns, now)
	case NoteListening:
		if ev.Seq != 0 {
			j.listening(ev.Netns, ev.Portid, ev.Seq, now)
		}
	case NoteGone:
		delete(j.routes, ev.Netns)
	case NoteChange:
		j.change(n, now)
	}
}

func (j *Joiner) change(n *Note, now int64) {
	ev := &n.Ev
	switch ev.Object {
	case event.ObjectLink:
		if ev.Op != event.OpDelete && j.onLink != nil {
			j.onLink(ev.Netns, ev.Oif, ev.Dev)
		}
		if ev.Op == event.OpDelete || n.LinkDown {
			j.trigger(ev, n.Hash, now)
		}
	case event.ObjectAddr:
		if ev.Op == event.OpDelete {
			j.trigger(ev, n.Hash, now)
		}
	default:
		if ev.Object == event.ObjectNexthop && ev.Op == event.OpDelete {
			j.trigger(ev, n.Hash, now)
		}
		j.notification(ev, n.Hash, now)
	}
}

// ListenedBy makes the joiner report only what happens in namespaces
// listened tells it are listened to (by default, for tests, everything).
// It is asked for every request: the listeners are the truth, so that a
// request right after a listener opened is not taken for an unheard one.
func (j *Joiner) ListenedBy(listened func(netns uint32) bool) { j.listened = listened }

// IgnoreOwn makes the joiner drop the notifications of changes requested
// on the sockets own names: this process's, whose requests the capture
// skips (self_tgid), so that they are not reported as changes by an
// unknown actor once their wait for a request ends.
func (j *Joiner) IgnoreOwn(own func(netns, portid uint32) bool) { j.own = own }

// OnUnlistened has f told of every request captured in a namespace that
// is not listened to, and such requests counted as a gap (Unlistened):
// for a tracer that follows every namespace.
func (j *Joiner) OnUnlistened(f func(*event.Event)) { j.unlistened = f }

// SetDumper gives the joiner the way to ask a namespace for its IPv4
// routes (Listeners.Dump).
func (j *Joiner) SetDumper(dump func(netns, seq uint32) error) { j.dump = dump }
