// Package forensics answers "why is this prefix unreachable?" from a
// stream of recorded changes (the journal): the last change to every route
// and rule that covers the prefix, who made it and what else they removed
// in the same burst, the request that made the kernel remove it by itself,
// and what to configure so the actor stops doing it.
//
// It reads events one at a time and keeps only what the answer needs: the
// last change to each matching route or rule, and the bursts of changes
// still open, so a journal of millions of events costs memory in
// proportion to the routes that match, not to the journal.
package forensics

import (
	"fmt"
	"iter"
	"net/netip"
	"strings"
	"time"

	"github.com/routetrace/routetrace/event"
)

// DefaultGap is the quiet time that ends a burst: changes by one actor
// less than this apart are one burst. A restart of systemd-networkd
// removes everything foreign within a few hundred milliseconds.
const DefaultGap = time.Second

// maxObjects bounds the routes and rules an investigation keeps. A
// narrow target matches a few; a target like 10.0.0.0/8 on a node with
// pod churn could match every pod route ever made. Past the bound, new
// objects are counted in Report.ObjectsNotKept instead.
const maxObjects = 4096

// outOfOrderSlack is how far back in time an event may arrive and still
// join a burst that is already closed. The journal is in the order the
// tracer emitted events, which is nearly time order: tier 3 reports an
// IPv4 flush it finds by comparing dumps with the time of the change that
// caused it, a little after later events.
const outOfOrderSlack = 10 * time.Second

// sweepEvery is how many events pass between sweeps of closed bursts.
const sweepEvery = 1024

// Options tunes an investigation.
type Options struct {
	// Gap is the quiet time that ends a burst (DefaultGap when zero).
	Gap time.Duration
	// Netns limits the answer to one network namespace (by inode); 0
	// means every namespace the journal holds.
	Netns uint32
	// Since leaves out changes before it (they still count as read, in
	// Report.EventsBeforeSince); zero means all.
	Since time.Time
}

// ParseTarget reads what `routetrace why` is asked about: an address
// (10.244.1.7, fd00::5) or a prefix (10.244.1.0/24). An address is its
// single-address prefix; a prefix with host bits set is masked, as the
// kernel would store it.
func ParseTarget(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix (like 10.244.1.7 or 10.244.1.0/24): %w", s, err)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: a zone is not part of a route's destination", s)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix (like 10.244.1.7 or 10.244.1.0/24): %w", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: a zone is not part of a route's destination", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmapBits is what an IPv4-mapped IPv6 prefix loses when unmapped.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// Match says how a route or rule relates to the target.
type Match string

const (
	// MatchExact: a route whose destination is the target.
	MatchExact Match = "exact"
	// MatchCovers: a route whose destination contains the target (the
	// node's pod CIDR, the default route): it would route it.
	MatchCovers Match = "covers"
	// MatchInside: a route inside a target prefix (a pod's /32 in the
	// node's /24).
	MatchInside Match = "inside"
	// MatchRuleFrom, MatchRuleTo: a rule whose from or to selector
	// contains, or lies inside, the target.
	MatchRuleFrom Match = "rule-from"
	MatchRuleTo   Match = "rule-to"
	// MatchRuleAll: a rule of the target's family with no address
	// selector (iif, fwmark, or none): it applies to the target too.
	MatchRuleAll Match = "rule-all"
)

// Investigation collects the answer for one target from events fed to it
// in journal order. It is not safe for concurrent use.
type Investigation struct {
	target netip.Prefix
	family uint8
	opts   Options

	objects        map[objectKey]*tracked
	objectsNotKept int
	actors         map[actorKey]*actorBursts

	scanned, failed int
	beforeSince     int
	first, last     time.Time
	latest          time.Time // the latest time seen, for sweeping bursts
	sinceSweep      int
	seq             uint64 // stream position: ties in time go to the later event
}

// NewInvestigation starts an investigation of target (see ParseTarget).
func NewInvestigation(target netip.Prefix, opts Options) *Investigation {
	if opts.Gap <= 0 {
		opts.Gap = DefaultGap
	}
	fam := uint8(event.FamilyInet6)
	if target.Addr().Is4() {
		fam = event.FamilyInet
	}
	return &Investigation{
		target:  target.Masked(),
		family:  fam,
		opts:    opts,
		objects: map[objectKey]*tracked{},
		actors:  map[actorKey]*actorBursts{},
	}
}

// Why runs an investigation of target over events. now is the time the
// report's "ago" is counted from.
func Why(events iter.Seq[*event.Event], target netip.Prefix, opts Options, now time.Time) *Report {
	inv := NewInvestigation(target, opts)
	for ev := range events {
		inv.Add(ev)
	}
	return inv.Report(now)
}

// objectKey identifies a route or rule across its changes, as the kernel
// does: a route by table, destination, TOS, metric and device (IPv6 keeps
// routes that differ only in device apart), a rule by everything that
// selects and what it does. The namespace keeps a pod's routes apart from
// the node's.
type objectKey struct {
	netns    uint32
	object   event.Object
	family   uint8
	table    uint32
	dst, src netip.Prefix
	tos      uint8
	priority uint32
	oif      uint32
	// rules
	iif, oifName event.Name
	fwmark       uint32
	fwmask       uint32
	action       uint8
	gotoTarget   uint32
}

// tracked is what is kept of one route or rule: its last change and, when
// that is an add, the last removal before it.
type tracked struct {
	match   Match
	last    record
	removal *record // the last delete before the last change, when it is back
	changes int
}

type record struct {
	ev    event.Event
	burst *burst
	seq   uint64
}

// actorKey is who a burst belongs to: a process by tgid and comm (a kernel
// removal counts toward the process whose request caused it). The
// executable is left out on purpose: a cause's actor can be named from
// /proc after the process's own changes were named from the kernel's
// record, or not at all once it exited, and a burst split on an
// enrichment gap would undercount. A pid reused within the gap by a
// process with the same comm is the only confusion this allows.
type actorKey struct {
	kernel  bool
	unknown bool
	tgid    uint32
	comm    event.Name
}

// responsible is the actor a change counts toward: the requester, or for
// a kernel removal with a known cause, the cause's requester.
func responsible(ev *event.Event) *event.Actor {
	if ev.Origin == event.OriginKernel && ev.Cause.Valid {
		return &ev.Cause.Actor
	}
	return &ev.Actor
}

func keyOf(a *event.Actor, origin event.Origin) actorKey {
	switch {
	case a.Kernel || (origin == event.OriginKernel && a.Tgid == 0):
		return actorKey{kernel: true}
	case a.Unknown():
		return actorKey{unknown: true}
	}
	return actorKey{tgid: a.Tgid, comm: a.Comm}
}

// Add feeds one event. ev is copied: the caller may reuse it.
func (inv *Investigation) Add(ev *event.Event) {
	if !inv.opts.Since.IsZero() && ev.Time.Before(inv.opts.Since) {
		inv.beforeSince++
		return
	}
	inv.scanned++
	inv.seq++
	if !ev.Time.IsZero() {
		if inv.first.IsZero() || ev.Time.Before(inv.first) {
			inv.first = ev.Time
		}
		if ev.Time.After(inv.last) {
			inv.last = ev.Time
		}
	}
	if ev.Errno != 0 {
		inv.failed++ // nothing changed
		return
	}
	if inv.opts.Netns != 0 && ev.Netns != inv.opts.Netns {
		return
	}
	counted := ev.Object == event.ObjectRoute || ev.Object == event.ObjectRule
	if !counted {
		return // nexthops: neither matched nor counted in bursts
	}
	b := inv.burstFor(ev)
	if ev.Op == event.OpFlush {
		return // a count of routes, no destination to match
	}
	m, ok := inv.match(ev)
	if !ok {
		return
	}
	k := objectKeyOf(ev)
	t := inv.objects[k]
	if t == nil {
		if len(inv.objects) >= maxObjects {
			inv.objectsNotKept++
			return
		}
		t = &tracked{match: m}
		inv.objects[k] = t
	}
	t.changes++
	rec := record{ev: *ev, burst: b, seq: inv.seq}
	if t.changes > 1 && ev.Time.Before(t.last.ev.Time) {
		// Out of order: an older change than the one kept. It can
		// still be the removal an add undid.
		if isRemoval(ev.Op) && !isRemoval(t.last.ev.Op) && (t.removal == nil || !ev.Time.Before(t.removal.ev.Time)) {
			t.removal = &rec
		}
		return
	}
	if isRemoval(ev.Op) {
		t.removal = nil
	} else if t.changes > 1 && isRemoval(t.last.ev.Op) {
		prev := t.last
		t.removal = &prev
	}
	t.last = rec
}

func isRemoval(op event.Op) bool { return op == event.OpDelete || op == event.OpFlush }

func objectKeyOf(ev *event.Event) objectKey {
	k := objectKey{
		netns: ev.Netns, object: ev.Object, family: ev.Family, table: ev.Table,
		dst: ev.Dst, src: ev.Src, tos: ev.TOS, priority: ev.Priority,
	}
	if ev.Object == event.ObjectRoute {
		k.dst = routeDst(ev)
		k.oif = ev.Oif
		return k
	}
	k.iif, k.oifName = ev.IifName, ev.OifName
	k.fwmark, k.fwmask = ev.FwMark, ev.FwMask
	k.action, k.gotoTarget = ev.Action, ev.Goto
	return k
}

// routeDst is a route's destination. The decoders give a default route
// 0.0.0.0/0 or ::/0; one without a destination is read as the default
// route of its family, which is what the kernel makes of a missing RTA_DST.
func routeDst(ev *event.Event) netip.Prefix {
	if ev.Dst.IsValid() {
		return netip.PrefixFrom(ev.Dst.Addr().Unmap(), ev.Dst.Bits()-unmapBits(ev.Dst.Addr())).Masked()
	}
	switch ev.Family {
	case event.FamilyInet:
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	case event.FamilyInet6:
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.Prefix{}
}

// relate says how prefix p relates to the target: equal, containing it,
// or inside it.
func (inv *Investigation) relate(p netip.Prefix) (Match, bool) {
	if !p.IsValid() || p.Addr().Is4() != inv.target.Addr().Is4() {
		return "", false
	}
	p = p.Masked()
	switch {
	case p == inv.target:
		return MatchExact, true
	case p.Bits() < inv.target.Bits() && p.Contains(inv.target.Addr()):
		return MatchCovers, true
	case p.Bits() > inv.target.Bits() && inv.target.Contains(p.Addr()):
		return MatchInside, true
	}
	return "", false
}

func (inv *Investigation) match(ev *event.Event) (Match, bool) {
	if ev.Object == event.ObjectRoute {
		return inv.relate(routeDst(ev))
	}
	// A rule: its family must be the target's.
	if ev.Family != inv.family {
		return "", false
	}
	if !ev.Src.IsValid() && !ev.Dst.IsValid() {
		return MatchRuleAll, true
	}
	// A rule with an address selector is about the target when either
	// selector holds it (or lies inside a target prefix): "from A" steers
	// A's traffic, replies included, and "to A" the traffic to it.
	if _, ok := inv.relate(ev.Dst); ok {
		return MatchRuleTo, true
	}
	if _, ok := inv.relate(ev.Src); ok {
		return MatchRuleFrom, true
	}
	return "", false
}
