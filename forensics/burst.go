package forensics

import (
	"net/netip"
	"time"

	"github.com/routetrace/routetrace/event"
)

// A burst is a run of changes by one actor with no quiet gap of Options.Gap
// between them: what one restart, one reconfigure or one CNI teardown did.
// Counts are by object and operation; kernel removals the actor's request
// caused count toward it and are also counted apart, so advice can tell
// "it deleted routes" from "it deleted an address and the kernel dropped
// the routes".
type burst struct {
	start, end time.Time
	counts     [2][opCount]int // [route, rule][op]
	viaKernel  [2]int          // removals the kernel made on its behalf
	// addresses are the addresses whose deletion by the actor made the
	// kernel remove routes, with their interface (a few at most: one
	// restart removes the addresses it did not configure).
	addresses []causeAddr
	// into is the burst this one was merged into, when an event arriving
	// between two bursts joined them.
	into *burst
}

type causeAddr struct {
	prefix  netip.Prefix
	ifindex uint32
}

const opCount = int(event.OpFlush) + 1

// maxCauseAddrs bounds burst.addresses.
const maxCauseAddrs = 8

// resolve follows merges to the burst that holds the counts.
func (b *burst) resolve() *burst {
	for b.into != nil {
		b = b.into
	}
	return b
}

func objectIndex(o event.Object) int {
	if o == event.ObjectRule {
		return 1
	}
	return 0
}

func (b *burst) add(ev *event.Event) {
	if ev.Time.Before(b.start) {
		b.start = ev.Time
	}
	if ev.Time.After(b.end) {
		b.end = ev.Time
	}
	n := 1
	if ev.Op == event.OpFlush && ev.Count > 0 {
		n = int(ev.Count)
	}
	oi := objectIndex(ev.Object)
	if int(ev.Op) < opCount {
		b.counts[oi][ev.Op] += n
	}
	if ev.Origin == event.OriginKernel && isRemoval(ev.Op) {
		b.viaKernel[oi] += n
		if c := &ev.Cause; c.Valid && c.Object == event.ObjectAddr && c.Prefix.IsValid() {
			b.noteAddress(causeAddr{c.Prefix, c.Ifindex})
		}
	}
}

func (b *burst) noteAddress(a causeAddr) {
	for _, x := range b.addresses {
		if x == a {
			return
		}
	}
	if len(b.addresses) < maxCauseAddrs {
		b.addresses = append(b.addresses, a)
	}
}

// merge moves o's counts into b.
func (b *burst) merge(o *burst) {
	if o.start.Before(b.start) {
		b.start = o.start
	}
	if o.end.After(b.end) {
		b.end = o.end
	}
	for i := range b.counts {
		for j := range b.counts[i] {
			b.counts[i][j] += o.counts[i][j]
		}
		b.viaKernel[i] += o.viaKernel[i]
	}
	for _, a := range o.addresses {
		b.noteAddress(a)
	}
	o.into = b
}

// actorBursts are one actor's bursts that may still grow: those that ended
// less than Gap + outOfOrderSlack before the latest event. Older ones are
// dropped from here and live on only where a kept change points at them.
type actorBursts struct {
	open []*burst
}

// burstFor counts ev in its actor's burst and returns that burst.
func (inv *Investigation) burstFor(ev *event.Event) *burst {
	if ev.Time.After(inv.latest) {
		inv.latest = ev.Time
	}
	k := keyOf(responsible(ev), ev.Origin)
	ab := inv.actors[k]
	if ab == nil {
		ab = &actorBursts{}
		inv.actors[k] = ab
	}
	gap := inv.opts.Gap
	var hit *burst
	kept := ab.open[:0]
	for _, b := range ab.open {
		joins := !ev.Time.Before(b.start.Add(-gap)) && !ev.Time.After(b.end.Add(gap))
		switch {
		case !joins:
			kept = append(kept, b)
		case hit == nil:
			hit = b
			kept = append(kept, b)
		default:
			// ev bridges two bursts: they are one.
			hit.merge(b)
		}
	}
	ab.open = kept
	if hit == nil {
		hit = &burst{start: ev.Time, end: ev.Time}
		ab.open = append(ab.open, hit)
	}
	hit.add(ev)

	inv.sinceSweep++
	if inv.sinceSweep >= sweepEvery {
		inv.sinceSweep = 0
		inv.sweep()
	}
	return hit
}

// sweep forgets bursts no event can join any more, and actors left with
// none, so that a journal of many short-lived processes (every `ip` run, a
// CNI plugin per pod) does not grow the actor table without end.
func (inv *Investigation) sweep() {
	horizon := inv.latest.Add(-inv.opts.Gap - outOfOrderSlack)
	for k, ab := range inv.actors {
		kept := ab.open[:0]
		for _, b := range ab.open {
			if !b.end.Before(horizon) {
				kept = append(kept, b)
			}
		}
		clear(ab.open[len(kept):])
		ab.open = kept
		if len(kept) == 0 {
			delete(inv.actors, k)
		}
	}
}
