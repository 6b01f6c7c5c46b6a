// Package repair is enforce's repair mode, for kernels where BPF LSM cannot
// refuse a change: a protected route, rule or nexthop that an actor not
// allowed removed is put back the moment its deletion is reported, exactly
// as it was (see routestate), and the event says so (VerdictRepaired, and
// how long the state was missing) or says why not.
//
// The caller judges: Deleted is called only for the events the policy
// judged would-block. An actor that keeps deleting is not fought forever:
// past Options.MaxRepairs within Options.Window the object is left alone
// for a time that doubles each round.
//
// Wiring (see Example): New before the tracer starts, so that what exists
// is snapshotted; the tracer with tracer.Options.LowLatency, or a deletion
// is reported a poll period late (10 ms, 500 ms idle) and stays missing
// that long; Deleted on the tracer's goroutine, before the journal, for
// each change the policy objects to; Resync after a policy reload. The
// repairs are this process's own changes: the tracer does not report them
// (self_tgid in tiers 1-2, rtnl.MarkOwn sockets in tier 3).
package repair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/netnswatch"
	"github.com/routetrace/routetrace/routestate"
)

// Options configure a Repairer. Zero values take the defaults.
type Options struct {
	// Netns narrows repair to these network namespaces (names in
	// /run/netns or paths) and our own, as tracer.Options.Netns does.
	// Empty: every namespace on the node, followed as they come and go
	// (found every 2 s: a namespace is snapshotted when found, so what it
	// lost before is not repaired).
	Netns []string
	// Keep says which objects to snapshot (the policy's protect entries,
	// asked of the object's own attributes); nil keeps all.
	Keep func(*event.Event) bool
	// MaxRepairs within Window: past it, the object is left deleted for
	// Backoff, doubled at each new round up to MaxBackoff. Defaults: 5 in
	// 10 s, 8 s, 5 min.
	MaxRepairs int
	Window     time.Duration
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Graveyard is how long a deleted object's snapshot is kept for its
	// event (default 30 s).
	Graveyard time.Duration
	Logger    *slog.Logger
}

// Repairer re-installs protected state. Its methods are safe for
// concurrent use.
type Repairer struct {
	opts  Options
	log   *slog.Logger
	store *routestate.Store

	watcher  *netnswatch.Watcher
	stop     context.CancelFunc
	watching chan struct{}

	mu    sync.Mutex
	hist  map[routestate.Key]*history
	clock func() time.Time // time.Now; tests move it
}

// history is one object's recent repairs and backoff.
type history struct {
	repairs []time.Time // within Window, oldest first
	until   time.Time   // no repair before this
	backoff time.Duration
	last    time.Time // last deletion seen
	acked   time.Time // the last repair's ack
}

// New takes the first snapshot of every namespace in opts.Netns and keeps
// it current until Close.
func New(opts Options) (*Repairer, error) {
	r := newRepairer(opts)
	r.store = routestate.New(routestate.Options{Keep: opts.Keep, Graveyard: opts.Graveyard, Logger: r.log})
	w, err := netnswatch.New(netnswatch.Options{Only: opts.Netns, Logger: r.log})
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	r.watcher = w
	if _, _, err := w.Scan(); err != nil {
		r.Close()
		return nil, fmt.Errorf("finding the network namespaces: %w", err)
	}
	for _, ns := range w.Namespaces() {
		if err := r.follow(ns); err != nil && (ns.Inode == w.Self() || len(opts.Netns) > 0) {
			r.Close()
			return nil, err // asked for by name, or our own
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	r.stop, r.watching = stop, make(chan struct{})
	go func() {
		defer close(r.watching)
		w.Run(ctx, func(ns netnswatch.Namespace) { r.follow(ns) }, r.store.Unfollow)
	}()
	return r, nil
}

// newRepairer fills in the defaults; New adds the store and the watcher.
func newRepairer(opts Options) *Repairer {
	if opts.MaxRepairs <= 0 {
		opts.MaxRepairs = 5
	}
	if opts.Window <= 0 {
		opts.Window = 10 * time.Second
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 8 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Repairer{opts: opts, log: log, hist: make(map[routestate.Key]*history), clock: time.Now}
}

// follow snapshots a namespace the watcher found.
func (r *Repairer) follow(ns netnswatch.Namespace) error {
	path := ns.Path
	if ns.Inode == r.watcher.Self() {
		path = "" // our own: no need to enter it
	}
	if _, err := r.store.Follow(path); err != nil {
		// A namespace that went away while we looked: the next scan
		// forgets it.
		r.log.Debug("not repairing in a network namespace", "netns", ns.Inode, "origin", ns.Origin, "err", err)
		return err
	}
	return nil
}

// Resync snapshots every namespace again, in the background: call it when
// what Options.Keep answers has changed (a policy reloaded), so that the
// state it now protects can be repaired.
func (r *Repairer) Resync() { r.store.Resync() }

// Snapshots is the number of objects kept in a namespace.
func (r *Repairer) Snapshots(netns uint32) int { return r.store.Len(netns) }

// Close stops following every namespace.
func (r *Repairer) Close() {
	if r.stop != nil {
		r.stop()
		<-r.watching
	}
	r.store.Close()
	r.watcher.Close()
}

// Deleted repairs the deletion ev reports, which the policy judged
// would-block: on success ev.Enforcement gets VerdictRepaired and Missing
// (from the deletion's kernel time to the kernel's ack of the repair);
// otherwise it keeps VerdictWouldBlock and Reason says why. It returns
// once the kernel answered. A flush reported as a count (OpFlush) is
// repaired route by route from a fresh dump; other operations (a
// replacement, a more specific route) are not repaired, and Reason says so.
func (r *Repairer) Deleted(ev *event.Event) {
	enf := &ev.Enforcement
	enf.Verdict = event.VerdictWouldBlock
	if ev.Op == event.OpFlush {
		r.flushed(ev)
		return
	}
	if ev.Op != event.OpDelete {
		enf.Reason = "not repaired: only deletions are repaired"
		return
	}
	k, _ := r.store.Find(routestate.KeyOf(ev))
	h, reason := r.admit(k, ev)
	if reason != "" {
		enf.Reason = reason
		return
	}
	gone := r.store.GoneAt(k) // before its repair: for the routes that went with a nexthop
	acked, err := r.reinstall(k)
	if errors.Is(err, unix.EEXIST) {
		// One request can delete an object in several notifications (an
		// IPv6 multipath route, hop by hop), each reported: the repair of
		// the first put back what the later ones removed.
		r.mu.Lock()
		last := h.acked
		r.mu.Unlock()
		if last.After(ev.Time) {
			acked, err = last, nil
		}
	}
	if err != nil {
		enf.Reason = r.failure(ev, err)
		if nh := r.store.NexthopOf(k); nh != 0 && errors.Is(err, unix.EINVAL) {
			// Tiers 1-2 report the routes a nexthop's deletion takes
			// along before the nexthop itself, whose deletion the store
			// may not have read yet: the kernel's word says it is gone.
			st := r.store.Lookup(routestate.Key{Netns: k.Netns, Object: event.ObjectNexthop, ID: nh})
			if st == routestate.Deleted || st == routestate.Present && strings.Contains(err.Error(), "Nexthop id does not exist") {
				enf.Reason = "repair deferred: its nexthop (id " + strconv.FormatUint(uint64(nh), 10) + ") is gone too; the nexthop's repair brings it back"
			}
		}
		r.log.Warn("repair failed", "object", describe(ev), "netns", ev.Netns, "reason", enf.Reason)
		return
	}
	r.mu.Lock()
	h.acked = acked
	r.mu.Unlock()
	enf.Verdict = event.VerdictRepaired
	enf.Missing = acked.Sub(ev.Time)
	r.log.Debug("repaired", "object", describe(ev), "netns", ev.Netns, "missing", enf.Missing)
	if ev.Object == event.ObjectNexthop {
		r.dependents(ev, k.ID, gone)
	}
}

// Transient refusals are retried for this long: a daemon that removes a
// protected route while it re-adds its own address (networkd's restart)
// leaves the route's gateway unreachable for tens of milliseconds.
const transientRetry = 500 * time.Millisecond

// reinstall puts k back, retrying while the kernel's refusal is one that
// passes by itself (the gateway not reachable yet). The tracer's events
// wait meanwhile: rare, and bounded by transientRetry.
func (r *Repairer) reinstall(k routestate.Key) (time.Time, error) {
	deadline := time.Now().Add(transientRetry)
	wait := 10 * time.Millisecond
	for {
		acked, err := r.store.Reinstall(k)
		if err == nil || !transient(err) || time.Now().Add(wait).After(deadline) {
			return acked, err
		}
		time.Sleep(wait)
		wait *= 2
	}
}

// transient reports a refusal that a moment may cure: no route to the
// gateway (ENETUNREACH), or "Nexthop has invalid gateway" (EINVAL), both
// while the address that makes it reachable is being re-added.
func transient(err error) bool {
	return errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EINVAL) && strings.Contains(err.Error(), "invalid gateway")
}

// dependents re-installs the routes the kernel removed with nexthop id
// (whose deletion the store saw at gone, 0: not yet), now that it is back:
// their own events come later (tier 3's wait for a request that never
// comes, or its dump for IPv4), or came before (tiers 1-2 report them
// inside the nexthop's deletion) when they could not be repaired without
// it. A route's later event is reported repaired as of now (see the
// EEXIST case). Routes a request deleted, or the kernel long before, stay
// deleted: the kernel's notifications of the routes and of the nexthop
// come in either order, within a moment (nexthopSlack).
func (r *Repairer) dependents(ev *event.Event, id uint32, gone int64) {
	if gone == 0 {
		gone = time.Now().UnixNano()
	}
	missing, err := r.store.Missing(ev.Netns, 0, id, gone-int64(nexthopSlack))
	if err != nil {
		r.log.Warn("finding the routes removed with a nexthop", "id", id, "netns", ev.Netns, "err", err)
		return
	}
	for _, k := range missing {
		acked, err := r.store.Reinstall(k)
		if err != nil {
			r.log.Warn("repairing a route removed with its nexthop", "dst", k.Dst, "table", k.Table, "nhid", id, "err", err)
			continue
		}
		r.mu.Lock()
		h := r.hist[k]
		if h == nil {
			h = &history{}
			r.hist[k] = h
		}
		h.acked = acked
		r.mu.Unlock()
	}
}

// flushed repairs a flush that tiers 1-2 reported as a count: which
// routes went is known by diffing the snapshot against a fresh dump (tier
// 3 reports each route of a flush, as a deletion, instead). Each route
// missing counts as a deletion of its own for the backoff.
func (r *Repairer) flushed(ev *event.Event) {
	enf := &ev.Enforcement
	missing, err := r.store.Missing(ev.Netns, ev.Family, 0, 0)
	if err != nil {
		enf.Reason = "repair failed: " + err.Error()
		return
	}
	if len(missing) == 0 {
		enf.Reason = "not repaired: no protected route is missing after the flush"
		return
	}
	var last time.Time
	var firstErr string
	done := 0
	for _, k := range missing {
		one := *ev
		one.Op, one.Object = event.OpDelete, event.ObjectRoute
		one.Family, one.Table, one.Dst, one.Src, one.TOS, one.Priority = k.Family, k.Table, k.Dst, k.Src, k.TOS, k.Priority
		r.Deleted(&one)
		if one.Enforcement.Verdict == event.VerdictRepaired {
			done++
			last = one.Time.Add(one.Enforcement.Missing)
		} else if firstErr == "" {
			firstErr = describe(&one) + ": " + one.Enforcement.Reason
		}
	}
	if done == len(missing) {
		enf.Verdict, enf.Missing = event.VerdictRepaired, last.Sub(ev.Time)
		return
	}
	enf.Reason = fmt.Sprintf("repaired %d of %d routes missing after the flush; %s", done, len(missing), firstErr)
}

// nexthopSlack bounds how long before its nexthop's a route's removal by
// the kernel is taken as part of it.
const nexthopSlack = time.Second

// admit counts a deletion against its object and returns its history, and
// why not to repair it now (backing off), "" to repair.
func (r *Repairer) admit(k routestate.Key, ev *event.Event) (*history, string) {
	now := r.clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hist[k]
	if h == nil {
		h = &history{}
		r.hist[k] = h
		r.forget(now)
	}
	if now.Sub(h.last) > r.opts.MaxBackoff {
		h.backoff = 0 // quiet for long enough: the next round starts low
	}
	h.last = now
	if now.Before(h.until) {
		return h, "not repaired: backing off for " + h.until.Sub(now).Round(time.Millisecond).String() + " more"
	}
	cut := now.Add(-r.opts.Window)
	n := 0
	for n < len(h.repairs) && h.repairs[n].Before(cut) {
		n++
	}
	h.repairs = h.repairs[n:]
	if len(h.repairs) < r.opts.MaxRepairs {
		h.repairs = append(h.repairs, now)
		return h, ""
	}
	h.backoff = min(max(h.backoff*2, r.opts.Backoff), r.opts.MaxBackoff)
	h.until = now.Add(h.backoff)
	h.repairs = h.repairs[:0]
	reason := fmt.Sprintf("backing off %s: deleted %d times in %s by %s", h.backoff, r.opts.MaxRepairs+1, r.opts.Window, actorOf(ev))
	r.log.Warn("repair backing off", "object", describe(ev), "netns", ev.Netns, "for", h.backoff,
		"deletions", r.opts.MaxRepairs+1, "window", r.opts.Window, "actor", actorOf(ev))
	return h, reason
}

// forget drops the histories of objects left alone for long (r.mu held),
// so that a node's churn does not grow the table; called as it grows.
func (r *Repairer) forget(now time.Time) {
	if len(r.hist) < 1024 || len(r.hist)&1023 != 0 {
		return
	}
	for k, h := range r.hist {
		if now.Sub(h.last) > r.opts.MaxBackoff && now.After(h.until) {
			delete(r.hist, k)
		}
	}
}

// failure is the Reason of a repair that failed.
func (r *Repairer) failure(ev *event.Event, err error) string {
	switch {
	case errors.Is(err, routestate.ErrNoSnapshot), errors.Is(err, routestate.ErrNotFollowed):
		return "repair failed: no snapshot of " + describe(ev)
	case errors.Is(err, unix.ENODEV):
		return "repair failed: device gone"
	case errors.Is(err, unix.EEXIST):
		return "not repaired: " + describe(ev) + " is back already"
	}
	return "repair failed: " + err.Error()
}

// describe names the object as ip(8) would: "10.244.1.5/32 table main".
func describe(ev *event.Event) string {
	switch ev.Object {
	case event.ObjectRule:
		return "rule pref " + strconv.FormatUint(uint64(ev.Priority), 10) + " table " + event.TableName(ev.Table)
	case event.ObjectNexthop:
		return "nexthop id " + strconv.FormatUint(uint64(ev.NexthopID), 10)
	}
	s := ev.Dst.String() + " table " + event.TableName(ev.Table)
	if ev.Priority != 0 {
		s += " metric " + strconv.FormatUint(uint64(ev.Priority), 10)
	}
	return s
}

// actorOf names who made the change, for the backoff's Reason.
func actorOf(ev *event.Event) string {
	a := &ev.Actor
	switch {
	case a.Kernel:
		return "the kernel"
	case a.Unknown():
		return "an unknown process"
	}
	return a.Comm.String() + " (pid " + strconv.FormatUint(uint64(a.Tgid), 10) + ")"
}
