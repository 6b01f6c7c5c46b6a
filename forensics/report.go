package forensics

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/routetrace/routetrace/event"
)

// Report is the answer for one target.
type Report struct {
	Target netip.Prefix
	// Now is when the report was made: "6h ago" counts from it.
	Now time.Time
	// Location is the time zone times are written in (nil: time.Local).
	Location *time.Location

	// EventsScanned is every event read; EventsFailed those that were
	// failed attempts (nothing changed). Undecodable is set by the caller:
	// journal records that could not be decoded and were skipped.
	EventsScanned, EventsFailed, Undecodable int
	// EventsBeforeSince were read but left out: older than Options.Since.
	EventsBeforeSince int
	Since             time.Time
	// From and To are the times of the oldest and newest event read.
	From, To time.Time
	// ObjectsNotKept counts matching routes and rules past the bound on
	// what one investigation keeps (a very wide target).
	ObjectsNotKept int

	// Changes are the routes and rules that cover the target, each with
	// its last change: most specific first, then most recent.
	Changes []Change
	// Advice is what to configure so that the actors stop, one entry per
	// kind of actor we know.
	Advice []Advice
}

// Change is the last change to one route or rule.
type Change struct {
	Match Match
	// Event is the last change (by time; a later one in the journal wins
	// a tie).
	Event event.Event
	// Burst is what the same actor did around it.
	Burst Burst
	// Seen is how many changes to this route or rule the journal holds.
	Seen int
	// Removal is the last removal before Event when Event put the object
	// back (an add or replace after a delete): it was gone, and is back.
	Removal *Removal
}

// Back reports that the object was removed and added again since.
func (c *Change) Back() bool { return c.Removal != nil }

// Removed reports that the last change removed the object.
func (c *Change) Removed() bool { return isRemoval(c.Event.Op) }

// Removal is a removal that a later change undid.
type Removal struct {
	Event event.Event
	Burst Burst
}

// Burst is a run of changes by one actor with no quiet gap of a second
// between them. A kernel removal counts toward the process whose request
// caused it.
type Burst struct {
	Start, End time.Time
	Routes     OpCounts
	Rules      OpCounts
	// RoutesByKernel and RulesByKernel are the removals among those that
	// the kernel made because of the actor's request.
	RoutesByKernel, RulesByKernel int
	// Addresses are the addresses the actor deleted that made the kernel
	// remove routes.
	Addresses []CauseAddress
}

// CauseAddress is an address whose deletion made the kernel remove routes.
type CauseAddress struct {
	Prefix  netip.Prefix
	Ifindex uint32
}

// OpCounts counts changes by operation.
type OpCounts struct {
	Add, Replace, Delete, Flush int
}

// Removals is Delete + Flush (a flush's routes are counted one by one).
func (o OpCounts) Removals() int { return o.Delete + o.Flush }

// Total counts every change.
func (o OpCounts) Total() int { return o.Add + o.Replace + o.Delete + o.Flush }

// Removals counts routes and rules the actor removed in the burst.
func (b *Burst) Removals() int { return b.Routes.Removals() + b.Rules.Removals() }

// Span is the time from the first to the last change of the burst.
func (b *Burst) Span() time.Duration { return b.End.Sub(b.Start) }

func exportBurst(b *burst) Burst {
	if b == nil {
		return Burst{}
	}
	b = b.resolve()
	ops := func(c [opCount]int) OpCounts {
		return OpCounts{Add: c[event.OpAdd], Replace: c[event.OpReplace], Delete: c[event.OpDelete], Flush: c[event.OpFlush]}
	}
	out := Burst{
		Start: b.start, End: b.end,
		Routes: ops(b.counts[0]), Rules: ops(b.counts[1]),
		RoutesByKernel: b.viaKernel[0], RulesByKernel: b.viaKernel[1],
	}
	for _, a := range b.addresses {
		out.Addresses = append(out.Addresses, CauseAddress{a.prefix, a.ifindex})
	}
	return out
}

// Report returns the answer so far; now is what "ago" counts from.
func (inv *Investigation) Report(now time.Time) *Report {
	r := &Report{
		Target: inv.target, Now: now,
		EventsScanned: inv.scanned, EventsFailed: inv.failed,
		EventsBeforeSince: inv.beforeSince, Since: inv.opts.Since,
		From: inv.first, To: inv.last,
		ObjectsNotKept: inv.objectsNotKept,
	}
	type sortable struct {
		c    Change
		spec int
		seq  uint64
	}
	var all []sortable
	for _, t := range inv.objects {
		c := Change{Match: t.match, Event: t.last.ev, Burst: exportBurst(t.last.burst), Seen: t.changes}
		if t.removal != nil && !isRemoval(t.last.ev.Op) {
			c.Removal = &Removal{Event: t.removal.ev, Burst: exportBurst(t.removal.burst)}
		}
		all = append(all, sortable{c, specificity(&c), t.last.seq})
	}
	slices.SortFunc(all, func(a, b sortable) int {
		if c := cmp.Compare(b.spec, a.spec); c != 0 {
			return c
		}
		if c := b.c.Event.Time.Compare(a.c.Event.Time); c != 0 {
			return c
		}
		if c := cmp.Compare(objectIndex(a.c.Event.Object), objectIndex(b.c.Event.Object)); c != 0 {
			return c
		}
		return cmp.Compare(b.seq, a.seq)
	})
	for _, s := range all {
		r.Changes = append(r.Changes, s.c)
	}
	r.Advice = adviseAll(r.Changes)
	return r
}

// specificity orders changes: the longest matching prefix first, as the
// kernel would pick it; a rule with no address selector last.
func specificity(c *Change) int {
	ev := &c.Event
	switch c.Match {
	case MatchRuleFrom:
		return ev.Src.Bits()
	case MatchRuleTo:
		return ev.Dst.Bits()
	case MatchRuleAll:
		return -1
	}
	return routeDst(ev).Bits()
}
