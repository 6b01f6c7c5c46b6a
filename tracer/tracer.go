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
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/bpffeat"
	"github.com/routetrace/routetrace/netnswatch"
	"github.com/routetrace/routetrace/rtnl"
	"github.com/routetrace/routetrace/tier3"
)

// Options configure a Tracer.
type Options struct {
	// Attach forces one tier: "auto" (default), "fentry", "kprobe" or
	// "tracepoint".
	Attach string
	// Netns narrows tracing to these network namespaces (names in
	// /run/netns or paths) and the tracer's own. Empty: every namespace
	// on the node, followed as namespaces come and go.
	Netns []string
	// Capture chooses how tier 3 captures rtnetlink requests and acks:
	// "auto" (default: "socket" where the kernel allows it, else
	// "syscalls"), "socket" (BTF tracepoints where netlink skbs are freed
	// and read) or "syscalls" (the syscall tracepoints, which tax every
	// syscall on the node).
	Capture string
	// Ioctl attributes route ioctls (net-tools route(8), ifconfig) to
	// their process with the ioctl syscall tracepoints, which put every
	// syscall on the node on the slow path. The syscall capture always
	// has them; with the socket capture they are attached only when asked
	// for, and changes made by ioctl are reported with an unknown actor.
	Ioctl bool
	// TraceSelf reports changes made by this process too; by default the
	// tracer's own netlink traffic is not captured, nor, in tier 3, the
	// notifications of the sockets marked with rtnl.MarkOwn (repairs).
	TraceSelf bool
	// LowLatency reports deletions within about a millisecond instead of
	// up to a poll period (5-10 ms busy, 500 ms idle) later, for repair
	// mode. In tier 3 the listeners wait in poll(2) for notifications, and
	// a deletion's notification makes the ring buffer be read at once and
	// every lowLatencyPoll until its request record is joined: a wakeup
	// per notification. Tiers 1-2 have no notification to wait for: the
	// ring buffer is read every lowLatencyPoll, idle or not.
	LowLatency bool
	// Logger receives progress and problems; nil means slog.Default().
	Logger *slog.Logger
	// OnProcess receives each process record the kernel sends (see
	// Process), on Run's goroutine, before any event that carries its
	// cookie in Actor.Cookie (or Cause.Actor.Cookie). nil: records are
	// read and dropped. The Process is the callee's to keep.
	OnProcess func(*Process)
}

// Stats counts what was read and what was not reported, so that no loss is
// silent. Every counter here is printed by the exit summary (see Losses).
type Stats struct {
	Records atomic.Uint64 // ring buffer records read, process records included
	// Processes counts the process records read (RT_KIND_PROC). One the
	// ring had no room for is counted with the other lost records
	// (Losses.RingRecords): its process's next record sends it again.
	Processes atomic.Uint64
	// Tier 3's: overruns, unconfirmed, truncated, evicted, listener gaps,
	// unlistened; and read errors of the ring buffer and the sockets.
	tier3.Stats
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
	// KprobeMissed: kprobe hits the kernel skipped (a kprobe firing inside
	// another's handler, e.g. the IPv6 GC timer interrupting one), from
	// each kprobe link's info (kernels 6.6 and later report it).
	KprobeMissed uint64
}

// Total is the sum of every counter: zero means nothing was missed.
func (l Losses) Total() uint64 {
	return l.RingRecords + l.Overruns + l.Truncated + l.Unconfirmed + l.Evicted + l.ReadErrors + l.ListenerGaps + l.Unlistened +
		l.KprobeMissed
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
		KprobeMissed: t.kprobeMissed(),
	}
}

// kprobeMissed sums the misses the kernel counted on every kprobe link.
func (t *Tracer) kprobeMissed() uint64 {
	var n uint64
	for _, a := range t.attached {
		for _, l := range a.links {
			info, err := l.Info()
			if err != nil {
				continue
			}
			if pe := info.PerfEvent(); pe != nil {
				if kp := pe.Kprobe(); kp != nil {
					n += kp.Missed
				}
			}
		}
	}
	return n
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
	opts     Options
	log      *slog.Logger
	hooks    []HookStatus
	tier3    tier3.Coverage
	objs     []*object
	attached []*attached
	reader   *ringbuf.Reader
	lostMap  *ebpf.Map
	watcher  *netnswatch.Watcher
	nsPaths  map[uint32]string // the traced namespaces' paths by inode, to look up link names
	namesAt  map[uint32]int64  // when each one's names were last listed (monotonic ns)
	names    map[nameKey]event.Name
	clock    clock
	stats    Stats
	capture  string      // tier 3's capture: CaptureSocket or CaptureSyscalls, "" without tier 3
	stopping atomic.Bool // Run is draining: readRing stops once the ring is empty
	// stopAt is when Run's ctx ended (CLOCK_MONOTONIC, Run's goroutine
	// only); 0 while tracing. See handleRecord.
	stopAt int64
	// flushed, set by tests before Run: called on Run's goroutine with a
	// ring flush's number (wakeRing) once every record written before
	// that flush has been handled. A test sharing one tracer uses it to
	// tell its changes from those made before it started.
	flushed   func(n uint32)
	listeners *tier3.Listeners // tier 3's notification sockets, nil without tier 3
	origins   bool             // ioctls behind notifications are named (origin.go)
	// flushAsked numbers the reader's flushes (wakeRing); readRing stamps
	// each kindRingFlushed record with it.
	flushAsked atomic.Uint64
	// urgentUntil (monotonic ns): with LowLatency, the ring buffer is read
	// every lowLatencyPoll until then (a deletion's request is awaited).
	urgentUntil atomic.Int64
	lastHurry   int64  // when hurryRing last read the ring (monotonic ns), on Run's goroutine
	self        uint32 // our tgid, whose changes are not reported; 0 with TraceSelf
	closed      sync.Once
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
	if err := checkCapture(opts.Capture); err != nil {
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

	if err := t.followNetns(); err != nil {
		return nil, err
	}
	self := uint32(os.Getpid())
	if opts.TraceSelf {
		self = 0
	}
	t.self = self
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
		t.tier3 = tier3.All
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
	// mapping of vmlinux's) into a cache the objects held on to: drop it
	// and give that memory back now, so that tracing runs in what it
	// really needs (measured: 10,000 cached pods took the tracer past its
	// 64 MiB while the cache lived). A program loaded later parses anew.
	for _, o := range t.objs {
		o.cache = nil
	}
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

// sharedMaps are the fib object's maps every other object writes to: one
// ring buffer, its loss counter, the per-CPU heap (see openObject), and
// the process records' (bpf/include/proc.h): one set of processes seen and
// one cookie counter, so that a cookie names one process whichever object
// sent its record.
func sharedMaps(fib *object) map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"events": fib.maps["events"], "lost": fib.maps["lost"], "heap": fib.maps["heap"],
		"procs_seen": fib.maps["procs_seen"], "proc_heap": fib.maps["proc_heap"],
	}
}

// startTier3 attaches the request capture and opens the notification
// listeners for the objects no FIB hook covers.
func (t *Tracer) startTier3(self uint32, fib *object, cache *btf.Cache) error {
	// Both captures walk messages with bpf_loop: without it the object
	// cannot load, and the refusal should say so rather than the
	// verifier's words.
	if err := bpffeat.BPFLoop(); errors.Is(err, bpffeat.ErrNoBPFLoop) {
		return fmt.Errorf("tier 3 (tracepoint): not offered: %w", err)
	}
	spec, err := loadNlcapture()
	if err != nil {
		return fmt.Errorf("reading the nlcapture BPF object: %w", err)
	}
	obj, err := openObject("nlcapture", spec, self, sharedMaps(fib), cache)
	if err != nil {
		return explainLoadError(err)
	}
	t.objs = append(t.objs, obj)
	a, capture, err := attachCapture(obj, t.opts.Capture, t.opts.Ioctl, t.log)
	if err != nil {
		return err
	}
	t.attached = append(t.attached, a)
	t.capture = capture

	// Listen before New returns: a change made right after must be seen.
	t.listeners = tier3.NewListeners(t.log, &t.stats.Stats, t.tier3&tier3.RouteInet != 0)
	if t.opts.LowLatency {
		if err := t.listeners.WakeOnNotification(); err != nil {
			return err
		}
	}
	t.startOrigins(self, fib, cache)
	for _, ns := range t.watcher.Namespaces() {
		if _, err := t.listeners.Add(ns.Path); err != nil {
			if ns.Inode == t.watcher.Self() || len(t.opts.Netns) > 0 {
				return err // asked for by name, or our own
			}
			// A namespace that went away while we looked: the next
			// scan forgets it.
			t.log.Debug("not listening to a network namespace", "netns", ns.Inode, "origin", ns.Origin, "err", err)
		}
	}
	t.log.Info("tier 3: capturing rtnetlink requests", "capture", t.capture, "objects", t.tier3.String(), "netns", t.listeners.Len())
	return nil
}

// Follows reports whether a network namespace is traced now: found, and
// in tier 3 listened to.
func (t *Tracer) Follows(netns uint32) bool {
	return t.watcher.Known(netns) && (t.listeners == nil || t.listeners.Has(netns))
}

// Hooks reports, per hook, the tier it got.
func (t *Tracer) Hooks() []HookStatus { return t.hooks }

// Tier3 reports whether any object is traced by tier 3.
func (t *Tracer) Tier3() bool { return t.tier3 != 0 }

// Capture is tier 3's capture (CaptureSocket or CaptureSyscalls), "" when
// tier 3 is not used.
func (t *Tracer) Capture() string { return t.capture }

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
		if t.listeners != nil {
			t.listeners.Close()
		}
		if t.watcher != nil {
			t.watcher.Close()
		}
		// Hooks detach concurrently: each detach waits for the
		// kernel's grace period (a trampoline's RCU tasks wait, a
		// kprobe's synchronize_rcu), and those waits overlap. Measured
		// under TCG on 6.1: 2.3 s one after another for the fentry tier.
		// A hook's own programs still detach in order (attached.close).
		var wg sync.WaitGroup
		for _, a := range t.attached {
			wg.Go(a.close)
		}
		wg.Wait()
		for _, o := range t.objs {
			o.close()
		}
	})
	return nil
}

// drainWait is how long Run keeps reading after ctx ends, so that the
// notifications and records of the last changes are reported.
const drainWait = 200 * time.Millisecond

// busyTick and idleTick: how often the joiner's deadlines are looked at
// while it waits for something, and when it waits for nothing.
const (
	busyTick = 100 * time.Millisecond
	idleTick = time.Second
)

// maxDrainExtra bounds the drain periods added while dumps are answered.
const maxDrainExtra = 10

// Run reports events to emit until ctx ends. emit's event is only valid
// during the call.
func (t *Tracer) Run(ctx context.Context, emit func(*event.Event)) error {
	recs := make(chan ringItem, 4096)
	notes := make(chan tier3.Note, 4096)
	var wg sync.WaitGroup

	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(recs)
		t.readRing(recs)
	}()

	wctx, stopWatching := context.WithCancel(context.Background())
	changes := make(chan nsChange, 256)
	hints := make(chan hint, 256)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		t.watchNetns(wctx, changes, hints)
	}()
	defer func() {
		stopWatching()
		<-watching
	}()

	var j *tier3.Joiner
	out := func(ev *event.Event) {
		if !t.traced(ev.Netns) {
			return // --netns narrows tiers 1-2 too
		}
		t.resolveDev(ev)
		emit(ev)
	}
	if t.listeners != nil {
		j = tier3.NewJoiner(t.tier3, out, &t.stats.Stats, func(netns, ifindex uint32, name event.Name) {
			t.names[nameKey{netns, ifindex}] = name
		})
		j.ListenedBy(t.listeners.Has)
		j.WaitForRing()
		if !t.opts.TraceSelf {
			j.IgnoreOwn(rtnl.Own)
		}
		j.SetDumper(t.listeners.Dump)
		if len(t.opts.Netns) == 0 {
			// Following every namespace: a request from one not listened
			// to yet is counted, and its namespace opened at once.
			j.OnUnlistened(func(ev *event.Event) {
				select {
				case hints <- hint{tid: ev.Actor.Pid, netns: ev.Netns}:
				default: // the periodic scan finds it
				}
			})
		}
		for _, n := range t.listeners.TakeNews() {
			j.Note(&n, monoNow())
		}
		go func() {
			defer close(notes)
			t.listeners.Run(notes)
		}()
	} else {
		close(notes)
	}

	// The joiner's deadlines are 200 ms and more: a tick of 100 ms keeps
	// them while it waits for anything, and a joiner with nothing waiting
	// is looked at once a second, so that an idle tracer sleeps.
	tick := time.NewTimer(busyTick)
	defer tick.Stop()
	tickIdle := false
	busy := func() {
		if tickIdle {
			tick.Reset(busyTick)
			tickIdle = false
		}
	}
	var ev event.Event
	done := ctx.Done()
	var drainTimer <-chan time.Time
	drainExtra := 0 // drain periods added for dumps still in flight
	// Stopping: the final dumps wait until the ring buffer and the sockets
	// have both been read up to the moment ctx ended.
	var ringSynced, listenersSynced, finalDumps bool
	var stopFlush uint64 // the flush asked for at the stop
	// The flush asked for orphans past their deadline, and when.
	var orphanFlush uint64
	var orphanFlushAt int64
	var lastWake time.Time
	for recs != nil || notes != nil {
		if j != nil && ringSynced && listenersSynced && !finalDumps {
			finalDumps = true
			j.DumpNow(monoNow())
		}
		select {
		case <-done:
			done = nil
			t.stopAt = monoNow()
			drainTimer = time.After(drainWait)
			if j != nil {
				// A flush already made is still compared, from dumps taken
				// once what the kernel said before now has been read: the
				// ring buffer (the requests naming the cause's actor) and
				// the sockets (the notifications asking for the dump) may
				// both be in an idle poll.
				stopFlush = t.wakeRing()
				t.listeners.Sync()
			}
		case <-drainTimer:
			if j != nil && !finalDumps {
				finalDumps = true // a sync that never came: dump anyway
				j.DumpNow(monoNow())
			}
			if j != nil && j.Dumping() && drainExtra < maxDrainExtra {
				drainExtra++
				drainTimer = time.After(drainWait)
				continue
			}
			drainTimer = nil
			// Everything the kernel did before ctx ended is in the ring
			// buffer and the sockets by now: read both to the end and
			// stop (the sockets are closed by Close, once drained).
			t.stopping.Store(true)
			if t.listeners != nil {
				t.listeners.Stop()
			}
		case it, ok := <-recs:
			if !ok {
				recs = nil
				continue
			}
			r := &it.rec
			if it.proc != nil {
				if t.opts.OnProcess != nil {
					t.opts.OnProcess(it.proc)
				}
			} else if r.Kind == kindRingFlushed {
				if stopFlush != 0 && r.Seq >= uint32(stopFlush) {
					ringSynced = true
				}
				if orphanFlush != 0 && r.Seq >= uint32(orphanFlush) {
					// Read up to when it was asked: the orphans due
					// then are settled now, with their records read.
					orphanFlush = 0
					j.RingReadAt(orphanFlushAt)
					j.Expire(monoNow(), false)
				}
				if t.flushed != nil {
					t.flushed(r.Seq)
				}
			} else {
				t.handleRecord(r, &ev, j, out)
				busy()
			}
		case n, ok := <-notes:
			if !ok {
				notes = nil
				continue
			}
			if n.Kind == tier3.NoteSynced {
				listenersSynced = true
			} else {
				if t.opts.LowLatency && n.Kind == tier3.NoteChange && n.Ev.Op == event.OpDelete {
					t.hurryRing()
				}
				if t.origins && n.Kind == tier3.NoteChange && n.Ev.Portid == 0 && time.Since(lastWake) > ringPoll {
					// Its ORIGIN record, if an ioctl made it, is in the
					// ring: read it now, even if the reader is idle.
					lastWake = time.Now()
					t.wakeRing()
				}
				j.Note(&n, monoNow())
				busy()
			}
		case c := <-changes:
			if c.path == "" {
				delete(t.nsPaths, c.inode)
				delete(t.namesAt, c.inode)
			} else {
				t.nsPaths[c.inode] = c.path
			}
		case <-tick.C:
			next := busyTick
			if j != nil {
				now := monoNow()
				if orphanFlush == 0 && j.OrphansDue(now) {
					// Orphans wait for the ring buffer to be read past
					// their deadline (Joiner.WaitForRing): ask for it.
					orphanFlush, orphanFlushAt = t.wakeRing(), now
				}
				j.Expire(now, false)
				if j.Idle() {
					next, tickIdle = idleTick, true
				}
			} else {
				next, tickIdle = idleTick, true
			}
			tick.Reset(next)
		}
	}
	wg.Wait()
	if j != nil {
		j.Expire(monoNow(), true)
	}
	return nil
}

// traced reports whether changes in a namespace are reported: with
// --netns, only those named and our own.
func (t *Tracer) traced(netns uint32) bool {
	if len(t.opts.Netns) == 0 {
		return true
	}
	_, ok := t.nsPaths[netns]
	return ok
}

func (t *Tracer) handleRecord(r *record, ev *event.Event, j *tier3.Joiner, out func(*event.Event)) {
	decodeRecord(&t.clock, r, ev)
	switch r.Kind {
	case kindChange:
		if t.tier3.Covers(ev.Object, ev.Family) {
			return // not expected: this object is traced at the syscalls
		}
		if t.self != 0 && ev.Actor.Tgid == t.self && !ev.Actor.Kernel {
			// Our own change (a repair): the FIB hooks do not check
			// self_tgid as tier 3's capture does.
			return
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
		if j != nil && !t.afterStop(r) {
			j.Request(ev, r.Flags, monoNow())
		}
	case kindAck:
		if j != nil && !t.afterStop(r) {
			j.Ack(ev, r.Flags, r.NlmsgType, r.NlmsgFlags, monoNow())
		}
	case kindOrigin:
		if j != nil {
			j.Origin(ev, r.Count, monoNow())
		}
	}
}

// afterStop reports a request or ack made after Run's ctx ended: outside
// the trace. Its notification may come after the sockets were read to
// their end, and the request would wait in vain (counted unconfirmed). A
// record written before the stop is safe: the socket capture writes it
// when the kernel frees the request, after the notification was queued,
// and the sockets are read to their end drainWait after the stop.
func (t *Tracer) afterStop(r *record) bool {
	return t.stopAt != 0 && int64(r.TsNs) > t.stopAt
}

// ringPoll is how often the ring buffer is read when the kernel does not
// wake the reader: records are written without a wakeup (see rt_emit).
const ringPoll = 10 * time.Millisecond

// With LowLatency, after a deletion's notification the ring buffer is read
// at once, again after each of rewakes, and every lowLatencyPoll for
// urgentWindow: the request's record is written when the kernel frees the
// request, after the notification was queued, and measured here it comes
// 100-250 µs after the notification was read; a read at once is too early.
//
// The reader's poller waits in whole milliseconds, rounded down: a 1 ms
// deadline would be a zero timeout, a busy loop. 2 ms waits 1.
const (
	lowLatencyPoll = 2 * time.Millisecond
	urgentWindowNs = int64(50e6)
)

var rewakes = [...]time.Duration{150 * time.Microsecond, 300 * time.Microsecond, 600 * time.Microsecond}

// hurryRing reads the ring buffer now and soon after, and keeps reading it
// fast for a while. A burst of deletions starts one series of reads per
// lowLatencyPoll, not one per deletion. Called on Run's goroutine only.
func (t *Tracer) hurryRing() {
	now := monoNow()
	t.urgentUntil.Store(now + urgentWindowNs)
	if now-t.lastHurry < int64(lowLatencyPoll/2) {
		return
	}
	t.lastHurry = now
	t.wakeRing()
	for _, d := range rewakes {
		time.AfterFunc(d, func() { t.wakeRing() })
	}
}

// ringItem is one record read from the ring buffer: an rt_event, or a
// process record already decoded (proc set).
type ringItem struct {
	rec  record
	proc *Process
}

// readRing copies records out of the ring buffer until it is closed, or
// until Run is stopping and nothing is left to read. The deadline is set
// here, by the reading goroutine: the reader holds its lock while it waits,
// so another goroutine setting it would wait for the next record.
func (t *Tracer) readRing(recs chan<- ringItem) {
	var rec ringbuf.Record
	var it ringItem
	lastRead := time.Now()
	for {
		wait := ringPoll
		if t.opts.LowLatency && (t.tier3 != tier3.All || monoNow() < t.urgentUntil.Load()) {
			wait = lowLatencyPoll
		} else if time.Since(lastRead) > idleAfter && !t.stopping.Load() {
			wait = idlePoll // idle: a forced wakeup still comes at 256 KiB
		}
		t.reader.SetDeadline(time.Now().Add(wait))
		err := t.reader.ReadInto(&rec)
		switch {
		case err == nil:
			lastRead = time.Now()
		case errors.Is(err, ringbuf.ErrFlushed):
			// Every record written before the flush has been read: say
			// so, with the number of the last flush asked (wakeRing).
			recs <- ringItem{rec: record{Kind: kindRingFlushed, Seq: uint32(t.flushAsked.Load())}}
			continue
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
		if recordKind(rec.RawSample) == kindProc {
			p, err := decodeProcess(&t.clock, rec.RawSample)
			if err != nil {
				t.stats.ReadErrors.Add(1)
				continue
			}
			t.stats.Records.Add(1)
			t.stats.Processes.Add(1)
			recs <- ringItem{proc: p}
			continue
		}
		if readRecord(rec.RawSample, &it.rec) != nil {
			t.stats.ReadErrors.Add(1)
			continue
		}
		t.stats.Records.Add(1)
		recs <- it
	}
}

// The ring buffer is read without being woken, fast while records flow and
// slowly when idle (the same polling as the listeners', see tier3).
const (
	idlePoll  = tier3.IdlePoll
	idleAfter = tier3.IdleAfter
)

// followNetns finds the network namespaces to trace (every one on the
// node, or those --netns names), and notes each one's path: link names are
// looked up there in every tier, and tier 3 listens there.
func (t *Tracer) followNetns() error {
	w, err := netnswatch.New(netnswatch.Options{Only: t.opts.Netns, Logger: t.log})
	if err != nil {
		return fmt.Errorf("--netns: %w", err)
	}
	t.watcher = w
	if _, _, err := w.Scan(); err != nil {
		return fmt.Errorf("finding the network namespaces: %w", err)
	}
	t.nsPaths = make(map[uint32]string)
	t.namesAt = make(map[uint32]int64)
	for _, ns := range w.Namespaces() {
		t.nsPaths[ns.Inode] = ns.Path
	}
	return nil
}

// A nsChange is a namespace that appeared (path set) or went away, for
// Run's own maps.
type nsChange struct {
	inode uint32
	path  string
}

// watchNetns follows namespaces as they come and go until ctx ends:
// tier 3 listens to each new one, and Run learns its path.
func (t *Tracer) watchNetns(ctx context.Context, changes chan<- nsChange, hints <-chan hint) {
	add := func(ns netnswatch.Namespace) {
		if t.listeners != nil {
			if _, err := t.listeners.Add(ns.Path); err != nil {
				t.log.Debug("not listening to a network namespace", "netns", ns.Inode, "origin", ns.Origin, "err", err)
				return
			}
		}
		select {
		case changes <- nsChange{inode: ns.Inode, path: ns.Path}:
		case <-ctx.Done():
		}
	}
	remove := func(ino uint32) {
		if t.listeners != nil {
			t.listeners.Remove(ino)
		}
		select {
		case changes <- nsChange{inode: ino}:
		case <-ctx.Done():
		}
	}
	go func() {
		for {
			select {
			case h := <-hints:
				if ns, isNew := t.watcher.Hint(h.tid, h.netns); isNew {
					add(ns)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	t.watcher.Run(ctx, func(ns netnswatch.Namespace) {
		if t.listeners == nil || !t.listeners.Has(ns.Inode) {
			add(ns)
		}
	}, remove)
}

// A hint is a request seen in a namespace tier 3 does not listen to yet:
// its thread is in it now, so the namespace can be opened through it.
type hint struct{ tid, netns uint32 }

func (t *Tracer) loadNames(ns string, inode uint32) {
	t.namesAt[inode] = monoNow()
	links, err := rtnl.Links(ns)
	if err != nil {
		t.log.Debug("listing links", "netns", ns, "err", err)
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
