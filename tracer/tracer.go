// Package tracer loads routetrace's BPF programs, attaches each FIB hook
// with the best tier the kernel allows, reads the ring buffer and turns
// records into events (joining tier 3's requests with the kernel's
// notifications).
package tracer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/rtnl"
)

// Options configure a Tracer.
type Options struct {
	// Attach forces one tier: "auto" (default), "fentry", "kprobe" or
	// "tracepoint".
	Attach string
	// Netns names extra network namespaces tier 3 listens to (names in
	// /run/netns or paths); the tracer's own is always included. Tiers 1
	// and 2 see every namespace.
	Netns []string
	// TraceSelf reports changes made by this process too; by default the
	// tracer's own netlink traffic is not captured.
	TraceSelf bool
	// Logger receives progress and problems; nil means slog.Default().
	Logger *slog.Logger
}

// Stats counts what was read and what was not reported, so that no loss is
// silent. Every counter here is printed by the exit summary (see Losses).
type Stats struct {
	Records           atomic.Uint64 // ring buffer records read
	NotificationsLost atomic.Uint64 // rtnetlink notification overruns (ENOBUFS)
	Unconfirmed       atomic.Uint64 // tier 3 requests with no notification or error
	ReadErrors        atomic.Uint64 // ring buffer or socket reads that failed
	Truncated         atomic.Uint64 // captures cut short by a kernel-side limit
	Evicted           atomic.Uint64 // pending requests dropped by the bound on them
	ListenerGaps      atomic.Uint64 // notification listeners restarted after an error
	Unlistened        atomic.Uint64 // tier 3 changes seen in a namespace with no listener yet
}

// Losses is a snapshot of every counter of what may have been missed, by
// name, in the order the summary prints them.
type Losses struct {
	RingRecords  uint64 // records the kernel's ring buffer had no room for
	Overruns     uint64 // rtnetlink notification overruns (ENOBUFS)
	Truncated    uint64 // captures cut short by a kernel-side limit
	Unconfirmed  uint64 // tier 3 requests neither confirmed nor refused
	Evicted      uint64 // pending tier 3 requests dropped by their bound
	ReadErrors   uint64 // failed reads of the ring buffer or a socket
	ListenerGaps uint64 // windows where a namespace's listener was restarted
	Unlistened   uint64 // changes in namespaces not (yet) listened to
}

// Total is the sum of every counter: zero means nothing was missed.
func (l Losses) Total() uint64 {
	return l.RingRecords + l.Overruns + l.Truncated + l.Unconfirmed + l.Evicted + l.ReadErrors + l.ListenerGaps + l.Unlistened
}

// Losses reads every loss counter now.
func (t *Tracer) Losses() Losses {
	s := &t.stats
	return Losses{
		RingRecords:  t.Lost(),
		Overruns:     s.NotificationsLost.Load(),
		Truncated:    s.Truncated.Load(),
		Unconfirmed:  s.Unconfirmed.Load(),
		Evicted:      s.Evicted.Load(),
		ReadErrors:   s.ReadErrors.Load(),
		ListenerGaps: s.ListenerGaps.Load(),
		Unlistened:   s.Unlistened.Load(),
	}
}

// HookStatus is what one hook got, and why better tiers were refused.
type HookStatus struct {
	Fn        string // the kernel function attached (an alternative's when used)
	What      string
	Essential bool
	Tier      event.Attach // AttachUnknown: none
	Refused   []Refusal
}

// Refusal is one tier a hook could not have.
type Refusal struct {
	Tier event.Attach
	Err  error
}

// Tracer is a loaded and attached set of programs.
type Tracer struct {
	opts      Options
	log       *slog.Logger
	hooks     []HookStatus
	tier3     coverage
	objs      []*object
	attached  []*attached
	reader    *ringbuf.Reader
	lostMap   *ebpf.Map
	netns     []string          // named namespaces (tier 3 listens to them), "" for our own
	nsPaths   map[uint32]string // their paths by inode, to look up link names
	namesAt   map[uint32]int64  // when each one's names were last listed (monotonic ns)
	names     map[nameKey]event.Name
	clock     clock
	stats     Stats
	stopping  atomic.Bool // Run is draining: readRing stops once the ring is empty
	lmu       sync.Mutex // guards the elements of listeners (restarts)
	listeners []*rtnl.Listener
	closed    sync.Once
}

type nameKey struct{ netns, ifindex uint32 }

var errNoTier = errors.New("no attach tier left to try")

// tiersFor returns the tiers to try, best first, for an --attach mode.
func tiersFor(mode string) ([]event.Attach, error) {
	switch mode {
	case "", "auto":
		return []event.Attach{event.AttachFentry, event.AttachKprobe}, nil
	case "fentry":
		return []event.Attach{event.AttachFentry}, nil
	case "kprobe":
		return []event.Attach{event.AttachKprobe}, nil
	case "tracepoint":
		return nil, nil
	}
	return nil, fmt.Errorf("unknown attach mode %q (want auto, fentry, kprobe or tracepoint)", mode)
}

// New checks the environment, loads the programs and attaches them.
func New(opts Options) (*Tracer, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	tiers, err := tiersFor(opts.Attach)
	if err != nil {
		return nil, err
	}
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	ensureMounts(log)
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising RLIMIT_MEMLOCK: %w", err)
	}

	// Loading decodes the kernel's BTF; collecting its garbage sooner keeps
	// the peak down (the 64 MiB budget of a node agent).
	defer debug.SetGCPercent(debug.SetGCPercent(25))

	t := &Tracer{opts: opts, log: log, names: make(map[nameKey]event.Name), clock: newClock()}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()

	if err := t.resolveNetns(); err != nil {
		return nil, err
	}
	self := uint32(os.Getpid())
	if opts.TraceSelf {
		self = 0
	}
	cache := btf.NewCache()
	spec, err := loadFib()
	if err != nil {
		return nil, fmt.Errorf("reading the fib BPF object: %w", err)
	}
	fib, err := openObject("fib", spec, self, nil, cache)
	if err != nil {
		return nil, explainLoadError(err)
	}
	t.objs = append(t.objs, fib)

	for _, h := range hooks() {
		st, a := attachHook(fib, h, tiers)
		t.hooks = append(t.hooks, st)
		if a != nil {
			t.attached = append(t.attached, a)
			continue
		}
		if h.Essential {
			t.tier3 |= h.Covers
			if opts.Attach == "fentry" || opts.Attach == "kprobe" {
				return nil, fmt.Errorf("--attach=%s: %s (%s) cannot attach: %w", opts.Attach, h.Fn, h.What, lastRefusal(st))
			}
		}
		log.Debug("hook not attached", "fn", h.Fn, "refused", st.Refused)
	}
	if opts.Attach == "tracepoint" {
		t.tier3 = coverAll
	}
	if t.tier3 != 0 {
		if err := t.startTier3(self, fib, cache); err != nil {
			return nil, err
		}
	}
	t.lostMap = fib.maps["lost"]
	t.reader, err = ringbuf.NewReader(fib.maps["events"])
	if err != nil {
		return nil, fmt.Errorf("opening the ring buffer: %w", err)
	}
	// Loading parsed the kernel's BTF (tens of MiB of Go objects, and a
	// mapping of vmlinux's) into a cache that dies with this function: give
	// that memory back now, so that tracing runs in what it really needs.
	debug.FreeOSMemory()
	ok = true
	return t, nil
}

func lastRefusal(st HookStatus) error {
	if len(st.Refused) == 0 {
		return errNoTier
	}
	return st.Refused[len(st.Refused)-1].Err
}

// attachHook tries each tier in order, each with the hook's function and
// then its alternatives, and keeps the first that loads and attaches.
func attachHook(obj *object, h hook, tiers []event.Attach) (HookStatus, *attached) {
	st := HookStatus{Fn: h.Fn, What: h.What, Essential: h.Essential}
	fns := append([]hookAlt{{Fn: h.Fn, Fentry: h.Fentry, Kprobe: h.Kprobe}}, h.Alternatives...)
	for _, tier := range tiers {
		if err := tierAvailable(tier); err != nil {
			st.Refused = append(st.Refused, Refusal{Tier: tier, Err: err})
			continue
		}
		var firstErr error
		for _, fn := range fns {
			progs := fn.Fentry
			if tier == event.AttachKprobe {
				progs = fn.Kprobe
			}
			a, err := attachAll(obj, progs)
			if err == nil {
				st.Fn = fn.Fn
				st.Tier = tier
				return st, a
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		st.Refused = append(st.Refused, Refusal{Tier: tier, Err: firstErr})
	}
	return st, nil
}

// startTier3 attaches the syscall capture and opens the notification
// listeners for the objects no FIB hook covers.
func (t *Tracer) startTier3(self uint32, fib *object, cache *btf.Cache) error {
	spec, err := loadNlcapture()
	if err != nil {
		return fmt.Errorf("reading the nlcapture BPF object: %w", err)
	}
	shared := map[string]*ebpf.Map{"events": fib.maps["events"], "lost": fib.maps["lost"], "heap": fib.maps["heap"]}
	obj, err := openObject("nlcapture", spec, self, shared, cache)
	if err != nil {
		return explainLoadError(err)
	}
	t.objs = append(t.objs, obj)
	names := make([]string, len(tracepoints))
	for i, tp := range tracepoints {
		names[i] = tp.Prog
	}
	a, err := attachAll(obj, names)
	if err != nil {
		return fmt.Errorf("attaching the syscall tracepoints (tier 3): %w", explainLoadError(err))
	}
	t.attached = append(t.attached, a)

	// Listen before New returns: a change made right after must be seen.
	for _, ns := range t.netns {
		l, err := rtnl.ListenPolled(ns, 64<<20)
		if err != nil {
			return fmt.Errorf("listening to rtnetlink notifications in netns %q: %w", nsLabel(ns), err)
		}
		t.listeners = append(t.listeners, l)
		t.loadNames(ns, l.Netns())
		if t.tier3&coverRoute4 != 0 {
			// The first cut of the IPv4 routes, requested now so that
			// a flush right after New returns is measured against it.
			if err := l.RequestRouteDump(event.FamilyInet, primeDumpSeq); err != nil {
				return err
			}
		}
	}
	t.log.Info("tier 3: capturing rtnetlink requests at the syscalls", "objects", t.tier3.String(), "netns", len(t.netns))
	return nil
}

func (c coverage) String() string {
	var parts []string
	for _, p := range []struct {
		bit  coverage
		name string
	}{{coverRoute4, "inet routes"}, {coverRoute6, "inet6 routes"}, {coverRule, "rules"}, {coverNexthop, "nexthops"}} {
		if c&p.bit != 0 {
			parts = append(parts, p.name)
		}
	}
	return strings.Join(parts, ", ")
}

// Hooks reports, per hook, the tier it got.
func (t *Tracer) Hooks() []HookStatus { return t.hooks }

// Tier3 reports whether any object is traced at the syscalls.
func (t *Tracer) Tier3() bool { return t.tier3 != 0 }

// Stats returns the tracer's counters.
func (t *Tracer) Stats() *Stats { return &t.stats }

// Lost is the kernel's count of records the ring buffer had no room for.
func (t *Tracer) Lost() uint64 {
	if t.lostMap == nil {
		return 0
	}
	var perCPU []uint64
	if err := t.lostMap.Lookup(uint32(0), &perCPU); err != nil {
		return 0
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n
}

// Close detaches everything. It is safe to call more than once.
func (t *Tracer) Close() error {
	t.closed.Do(func() {
		if t.reader != nil {
			t.reader.Close()
		}
		for _, l := range t.listeners {
			l.Close()
		}
		for _, a := range t.attached {
			a.close()
		}
		for _, o := range t.objs {
			o.close()
		}
	})
	return nil
}

// drainWait is how long Run keeps reading after ctx ends, so that the
// notifications and records of the last changes are reported.
const drainWait = 200 * time.Millisecond

// Run reports events to emit until ctx ends. emit's event is only valid
// during the call.
func (t *Tracer) Run(ctx context.Context, emit func(*event.Event)) error {
	recs := make(chan record, 4096)
	notes := make(chan note, 4096)
	var wg sync.WaitGroup

	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(recs)
		t.readRing(recs)
	}()

	go func() {
		defer close(notes)
		t.readNotifications(notes)
	}()

	var j *joiner
	out := func(ev *event.Event) {
		t.resolveDev(ev)
		emit(ev)
	}
	if t.tier3 != 0 {
		j = newJoiner(t.tier3, &t.clock, out, &t.stats)
		j.netns = make(map[uint32]bool, len(t.listeners))
		for _, l := range t.listeners {
			j.netns[l.Netns()] = true
		}
		if t.tier3&coverRoute4 != 0 {
			t.watchRoutes(j)
		}
	}

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var ev event.Event
	done := ctx.Done()
	var drainTimer <-chan time.Time
	for recs != nil || notes != nil {
		select {
		case <-done:
			done = nil
			drainTimer = time.After(drainWait)
		case <-drainTimer:
			drainTimer = nil
			// Everything the kernel did before ctx ended is in the ring
			// buffer and the sockets by now: read both to the end and
			// stop (the sockets are closed by Close, once drained).
			t.stopping.Store(true)
		case r, ok := <-recs:
			if !ok {
				recs = nil
				continue
			}
			t.handleRecord(&r, &ev, j, out)
		case n, ok := <-notes:
			if !ok {
				notes = nil
				continue
			}
			if j == nil {
				continue
			}
			t.handleNote(&n, j)
		case <-tick.C:
			if j != nil {
				j.expire(monoNow(), false)
			}
		}
	}
	wg.Wait()
	if j != nil {
		j.expire(monoNow(), true)
	}
	return nil
}

func nsLabel(ns string) string {
	if ns == "" {
		return "self"
	}
	return ns
}

func (t *Tracer) handleRecord(r *record, ev *event.Event, j *joiner, out func(*event.Event)) {
	decodeRecord(&t.clock, r, ev)
	switch r.Kind {
	case kindChange:
		if j != nil && j.cover.covers(ev.Object, ev.Family) {
			return // not expected: this object is traced at the syscalls
		}
		if ev.Op == event.OpFlush {
			// fib_notify_alias_delete reported r.Reserved of the routes
			// one by one: the flush record stands only for the rest.
			if r.Reserved >= r.Count {
				return
			}
			ev.Count = r.Count - r.Reserved
		}
		out(ev)
	case kindRequest:
		if j != nil {
			j.request(r, ev, monoNow())
		}
	case kindAck:
		if j != nil {
			j.ack(r, ev, monoNow())
		}
	}
}

// ringPoll is how often the ring buffer is read when the kernel does not
// wake the reader: records are written without a wakeup (see rt_emit).
const ringPoll = 10 * time.Millisecond

// readRing copies records out of the ring buffer until it is closed, or
// until Run is stopping and nothing is left to read. The deadline is set
// here, by the reading goroutine: the reader holds its lock while it waits,
// so another goroutine setting it would wait for the next record.
func (t *Tracer) readRing(recs chan<- record) {
	var rec ringbuf.Record
	var r record
	lastRead := time.Now()
	for {
		wait := ringPoll
		if time.Since(lastRead) > idleAfter && !t.stopping.Load() {
			wait = idlePoll // idle: a forced wakeup still comes at 256 KiB
		}
		t.reader.SetDeadline(time.Now().Add(wait))
		err := t.reader.ReadInto(&rec)
		switch {
		case err == nil:
			lastRead = time.Now()
		case errors.Is(err, os.ErrDeadlineExceeded):
			if t.stopping.Load() && t.reader.AvailableBytes() == 0 {
				return
			}
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return
		default:
			// Never spin on a failing read: count it, say it, go on.
			t.stats.ReadErrors.Add(1)
			t.log.Warn("reading the ring buffer", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if readRecord(rec.RawSample, &r) != nil {
			t.stats.ReadErrors.Add(1)
			continue
		}
		t.stats.Records.Add(1)
		recs <- r
	}
}

// Polling: the ring buffer and the notification sockets are read without
// being woken (a wakeup per record or notification costs the changing task
// several microseconds), fast while changes flow and slowly when idle, so
// that an idle tracer costs next to nothing.
const (
	busyPoll = 5 * time.Millisecond
	idlePoll = 200 * time.Millisecond
	// idleAfter is how long without anything read before polling slows.
	idleAfter = time.Second
)

// A note is one message read from a notification socket.
type note struct {
	ev       event.Event
	kind     uint8
	linkDown bool // an RTM_NEWLINK that takes the link down
}

const (
	noteChange     = iota
	noteDumpEnd    // NLMSG_DONE of a dump: ev has Netns, Portid, Seq
	noteDumpFailed // NLMSG_ERROR answering a dump request
	noteOverrun    // the kernel dropped notifications: ev has Netns
	noteReopened   // a failed listener was replaced: ev has Netns, Portid
)

// handleNote passes one notification to the joiner.
func (t *Tracer) handleNote(n *note, j *joiner) {
	ev := &n.ev
	now := monoNow()
	switch {
	case n.kind == noteDumpEnd:
		j.dumpDone(ev.Netns, ev.Portid, ev.Seq, now)
	case n.kind == noteDumpFailed:
		j.dumpFailed(ev.Netns, ev.Portid, ev.Seq)
	case n.kind == noteOverrun:
		j.overrun(ev.Netns, now)
	case n.kind == noteReopened:
		j.relisten(ev.Netns, ev.Portid, now)
	case ev.Object == event.ObjectLink:
		if ev.Op != event.OpDelete {
			t.names[nameKey{ev.Netns, ev.Oif}] = ev.Dev
		}
		if ev.Op == event.OpDelete || n.linkDown {
			j.trigger(ev, now)
		}
	case ev.Object == event.ObjectAddr:
		if ev.Op == event.OpDelete {
			j.trigger(ev, now)
		}
	default:
		if ev.Object == event.ObjectNexthop && ev.Op == event.OpDelete {
			j.trigger(ev, now)
		}
		j.notification(ev, now)
	}
}

// watchRoutes has the joiner keep each namespace's IPv4 routes, asking for
// dumps through the namespace's own listener.
func (t *Tracer) watchRoutes(j *joiner) {
	for _, l := range t.listeners {
		portid, err := l.Portid()
		if err != nil {
			t.log.Warn("IPv4 flushes will not be seen", "netns", l.Netns(), "err", err)
			continue
		}
		j.watchRoutes(l.Netns(), portid, primeDumpSeq)
	}
	j.dump = func(netns, seq uint32) error {
		l := t.listenerIn(netns)
		if l == nil {
			return errNoListener
		}
		err := l.RequestRouteDump(event.FamilyInet, seq)
		if err != nil {
			t.log.Warn("requesting an IPv4 route dump", "netns", netns, "err", err)
		}
		return err
	}
}

var errNoListener = errors.New("no listener in that network namespace")

// primeDumpSeq is the seq of the dump each listener asks for when it opens.
const primeDumpSeq = 1

// readNotifications reads every listener in turn until each is empty,
// then sleeps: busyPoll while notifications flow, idlePoll when idle. It
// returns once Run is stopping and every socket has been drained.
func (t *Tracer) readNotifications(notes chan<- note) {
	buf := make([]byte, 64<<10)
	lastRead := time.Now()
	for {
		stopping := t.stopping.Load()
		read := false
		for i := range t.listeners { // the slice's length never changes
			for t.readListener(i, buf, notes) {
				read = true
			}
		}
		if stopping {
			return // drained after the tracer stopped
		}
		now := time.Now()
		if read {
			lastRead = now
		}
		if now.Sub(lastRead) < idleAfter {
			time.Sleep(busyPoll)
		} else {
			t.sleepIdle(idlePoll)
		}
	}
}

// sleepIdle sleeps up to d, less if Run starts stopping.
func (t *Tracer) sleepIdle(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end) && !t.stopping.Load(); {
		time.Sleep(busyPoll * 4)
	}
}

// readListener reads one datagram from listener i and passes its messages
// on; false when the socket had nothing. A listener that fails for another
// reason than an overrun is opened again, and the gap reported.
func (t *Tracer) readListener(i int, buf []byte, notes chan<- note) bool {
	t.lmu.Lock()
	l := t.listeners[i]
	t.lmu.Unlock()
	size, err := l.Poll(buf)
	if err == nil && size == 0 {
		return false
	}
	netns := l.Netns()
	if errors.Is(err, rtnl.ErrOverrun) {
		t.stats.NotificationsLost.Add(1)
		t.log.Warn("rtnetlink notifications were dropped by the kernel (socket buffer full): resynchronising from a dump; changes in this window may be reported without their actor", "netns", netns)
		notes <- note{ev: event.Event{Netns: netns}, kind: noteOverrun}
		return true
	}
	if err != nil {
		t.restartListener(i, err, notes)
		return false
	}
	now := time.Now()
	var n note
	ev := &n.ev
	for rest := buf[:size]; len(rest) > 0; {
		h, msg, next, err := rtnl.Next(rest)
		if err != nil {
			t.stats.ReadErrors.Add(1)
			break
		}
		rest = next
		*ev = event.Event{Netns: netns, Portid: h.Portid, Seq: h.Seq}
		n.linkDown = false
		switch h.Type {
		case unix.NLMSG_DONE:
			n.kind = noteDumpEnd
		case unix.NLMSG_ERROR:
			n.kind = noteDumpFailed
		default:
			if rtnl.Decode(h, msg, ev) != nil {
				continue
			}
			ev.Netns, ev.Time, n.kind = netns, now, noteChange
			n.linkDown = ev.Object == event.ObjectLink && rtnl.LinkDown(msg)
		}
		notes <- n
	}
	return true
}

// restartListener replaces a listener that failed: what happened in its
// namespace meanwhile is lost, so the gap is counted, logged, and the
// route cache resynchronised.
func (t *Tracer) restartListener(i int, cause error, notes chan<- note) {
	old := t.listeners[i]
	netns := old.Netns()
	t.stats.ListenerGaps.Add(1)
	path := t.nsPathOf(netns)
	l, err := rtnl.ListenPolled(path, 64<<20)
	if err != nil {
		t.log.Error("an rtnetlink listener failed and could not be reopened: changes in this namespace are not seen", "netns", netns, "err", cause, "reopen", err)
		return
	}
	t.log.Warn("an rtnetlink listener failed and was reopened: changes in the gap may be missing", "netns", netns, "err", cause)
	portid, err := l.Portid()
	if err != nil {
		t.log.Warn("IPv4 flushes will not be seen", "netns", netns, "err", err)
	}
	t.lmu.Lock()
	t.listeners[i] = l
	t.lmu.Unlock()
	old.Close()
	notes <- note{ev: event.Event{Netns: netns, Portid: portid}, kind: noteReopened}
}

// nsPathOf is the path a namespace's listener was opened through.
func (t *Tracer) nsPathOf(netns uint32) string { return t.nsPaths[netns] }

// listenerIn returns the listener of a namespace.
func (t *Tracer) listenerIn(netns uint32) *rtnl.Listener {
	t.lmu.Lock()
	defer t.lmu.Unlock()
	for _, l := range t.listeners {
		if l.Netns() == netns {
			return l
		}
	}
	return nil
}

// resolveNetns turns --netns names into paths, and notes each named
// namespace's inode: in every tier, link names are looked up there.
func (t *Tracer) resolveNetns() error {
	t.netns = []string{""}
	for _, n := range t.opts.Netns {
		p := n
		if !strings.ContainsRune(n, '/') {
			p = filepath.Join("/run/netns", n)
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("--netns %s: %w (name one from `ip netns list` or give a path like /proc/PID/ns/net)", n, err)
		}
		t.netns = append(t.netns, p)
	}
	t.nsPaths = make(map[uint32]string, len(t.netns))
	t.namesAt = make(map[uint32]int64, len(t.netns))
	for _, p := range t.netns {
		ino, err := rtnl.NetnsInode(p)
		if err != nil {
			return fmt.Errorf("netns %s: %w", nsLabel(p), err)
		}
		t.nsPaths[ino] = p
	}
	return nil
}

func (t *Tracer) loadNames(ns string, inode uint32) {
	t.namesAt[inode] = monoNow()
	links, err := rtnl.Links(ns)
	if err != nil {
		t.log.Debug("listing links", "netns", nsLabel(ns), "err", err)
		return
	}
	for idx, name := range links {
		var n event.Name
		n.Set(name)
		t.names[nameKey{inode, idx}] = n
	}
}

// namesRefresh bounds how often a namespace's links are listed again for
// an unknown index (tiers 1-2 get no link notifications).
const namesRefreshNs = int64(time.Second)

func (t *Tracer) resolveDev(ev *event.Event) {
	if ev.Oif == 0 || ev.Dev[0] != 0 {
		return
	}
	k := nameKey{ev.Netns, ev.Oif}
	n, ok := t.names[k]
	if !ok {
		p, named := t.nsPaths[ev.Netns]
		if !named || monoNow()-t.namesAt[ev.Netns] < namesRefreshNs {
			return
		}
		t.loadNames(p, ev.Netns)
		if n, ok = t.names[k]; !ok {
			return
		}
	}
	ev.Dev = n
}
