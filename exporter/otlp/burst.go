package otlp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/routetrace/routetrace/event"
)

// A burst is one actor's changes with gaps shorter than the quiet time:
// one trace, under a root span named for the actor, with a child per
// change. Kernel removals count toward the actor whose request caused
// them and hang under a span for that request (the address or link
// change), so "networkd deleted its address, the kernel flushed 9 routes"
// is one tree.
//
// Events reach the grouper in journal order, which for tier 3 is up to
// seconds away from the kernel's order. Bursts are therefore formed by
// event time, never arrival: a burst stays open until the watermark (the
// newest event time seen, less the reorder window; the wall clock when the
// journal is idle) has passed its last change by the quiet time. An event
// later than the reorder window starts a burst of its own.
//
// Every ID is derived from the journal: the trace from a per-node seed and
// the burst's first record, a change's span from the trace and its record.
// A record exported twice (a crash between the backend's answer and the
// cursor's write) is the same span twice, which backends store once.

// groupOptions tunes the grouping.
type groupOptions struct {
	Quiet       time.Duration
	Reorder     time.Duration
	MaxChildren int
	CommandArgs bool
}

type grouper struct {
	opts  groupOptions
	seed  [16]byte
	attrs *attributer

	st  groupState
	out []*span
	// scratch is reused for every change's attributes.
	scratch []attribute.KeyValue
}

// groupState is what a restart needs to continue exactly: the open bursts
// and the watermark. The exporter saves it with the journal's cursor.
type groupState struct {
	Version int      `json:"version"`
	MaxTime int64    `json:"max_time"` // newest event time seen, unix ns
	Bursts  []*burst `json:"bursts,omitempty"`
}

type burst struct {
	Key      string   `json:"key"`
	Trace    [16]byte `json:"trace"`
	FirstSeq uint64   `json:"first_seq"`
	First    int64    `json:"first"`
	Last     int64    `json:"last"`
	// Actor is the actor as an encoded event: the root's name and
	// attributes come from it when the burst closes.
	Actor      []byte         `json:"actor"`
	Changes    int            `json:"changes"`
	Errors     int            `json:"errors"`
	Kernel     int            `json:"kernel"`
	Children   int            `json:"children"`
	Aggregated int            `json:"aggregated"`
	Counts     map[string]int `json:"counts"` // "route.delete" → n
	Errnos     map[string]int `json:"errnos,omitempty"`
	Causes     []*causeSpan   `json:"causes,omitempty"`
	Aggs       []*aggSpan     `json:"aggs,omitempty"`
}

// causeSpan is the request that made the kernel remove state by itself.
type causeSpan struct {
	Key      string `json:"key"`
	Object   uint8  `json:"object"`
	Op       uint8  `json:"op"`
	Ifindex  uint32 `json:"ifindex"`
	Prefix   string `json:"prefix,omitempty"`
	First    int64  `json:"first"`
	Last     int64  `json:"last"`
	Removals int    `json:"removals"`
}

// aggSpan counts the changes past the burst's child bound that share a
// parent, an object, an operation and an errno.
type aggSpan struct {
	Parent   [8]byte `json:"parent"`
	Object   uint8   `json:"object"`
	Op       uint8   `json:"op"`
	Errno    int32   `json:"errno"`
	Count    int     `json:"count"`
	First    int64   `json:"first"`
	Last     int64   `json:"last"`
	FirstDst string  `json:"first_dst,omitempty"`
	LastDst  string  `json:"last_dst,omitempty"`
}

const groupStateVersion = 1

func newGrouper(opts groupOptions, seed [16]byte) *grouper {
	return &grouper{
		opts:  opts,
		seed:  seed,
		attrs: newAttributer(opts.CommandArgs),
		st:    groupState{Version: groupStateVersion},
	}
}

// burstActor is the actor a change counts toward: for a kernel removal
// with a known cause, the cause's actor.
func burstActor(ev *event.Event) *event.Actor {
	if ev.Origin == event.OriginKernel && ev.Cause.Valid && !ev.Cause.Actor.Kernel && !ev.Cause.Actor.Unknown() {
		return &ev.Cause.Actor
	}
	return &ev.Actor
}

func actorKey(a *event.Actor) string {
	switch {
	case a.Kernel:
		return "kernel"
	case a.Unknown():
		return "unknown"
	}
	return strconv.FormatUint(uint64(a.Tgid), 10) + "/" + a.Comm.String()
}

// add groups one journaled change; finished spans go to g.out.
func (g *grouper) add(seq uint64, ev *event.Event) {
	t := ev.Time.UnixNano()
	if t > g.st.MaxTime {
		g.st.MaxTime = t
	}
	actor := burstActor(ev)
	key := actorKey(actor)
	quiet := g.opts.Quiet.Nanoseconds()
	var b *burst
	for _, o := range g.st.Bursts {
		if o.Key == key && t >= o.First-quiet && t <= o.Last+quiet {
			b = o
			break
		}
	}
	if b == nil {
		b = &burst{Key: key, FirstSeq: seq, First: t, Last: t, Counts: map[string]int{}}
		b.Trace = g.traceID(seq)
		b.Actor = event.AppendBinary(nil, &event.Event{Time: ev.Time, Actor: *actor})
		g.st.Bursts = append(g.st.Bursts, b)
	}
	b.First, b.Last = min(b.First, t), max(b.Last, t)
	b.Changes++
	b.Counts[ev.Object.String()+"."+ev.Op.String()]++
	if ev.Errno != 0 {
		b.Errors++
		if b.Errnos == nil {
			b.Errnos = map[string]int{}
		}
		b.Errnos[event.ErrnoName(ev.Errno)]++
	}

	parent := g.rootID(b)
	if ev.Origin == event.OriginKernel && ev.Cause.Valid {
		b.Kernel++
		c := b.cause(ev, t)
		parent = spanID(b.Trace, "cause", c.Key)
	}
	if b.Children < g.opts.MaxChildren {
		b.Children++
		g.emitChange(b, parent, seq, ev)
	} else {
		b.Aggregated++
		b.aggregate(parent, ev, t)
	}
	g.closeDue(g.st.MaxTime - g.opts.Reorder.Nanoseconds())
}

// advance closes bursts by the wall clock once the journal is idle: no
// event older than now less the reorder window is still on its way.
func (g *grouper) advance(now time.Time) {
	g.closeDue(max(g.st.MaxTime, now.UnixNano()) - g.opts.Reorder.Nanoseconds())
}

// closeAll ends every open burst (routetrace is stopping).
func (g *grouper) closeAll() { g.closeDue(1<<63 - 1) }

func (g *grouper) closeDue(watermark int64) {
	quiet := g.opts.Quiet.Nanoseconds()
	g.st.Bursts = slices.DeleteFunc(g.st.Bursts, func(b *burst) bool {
		if b.Last+quiet >= watermark {
			return false
		}
		g.emitClosed(b)
		return true
	})
}

func (b *burst) cause(ev *event.Event, t int64) *causeSpan {
	c := &ev.Cause
	key := fmt.Sprintf("%s.%s.%d.%s", c.Object, c.Op, c.Ifindex, c.Prefix)
	for _, cs := range b.Causes {
		if cs.Key == key {
			cs.First, cs.Last = min(cs.First, t), max(cs.Last, t)
			cs.Removals++
			return cs
		}
	}
	cs := &causeSpan{Key: key, Object: uint8(c.Object), Op: uint8(c.Op), Ifindex: c.Ifindex, First: t, Last: t, Removals: 1}
	if c.Prefix.IsValid() {
		cs.Prefix = c.Prefix.String()
	}
	b.Causes = append(b.Causes, cs)
	return cs
}

func (b *burst) aggregate(parent [8]byte, ev *event.Event, t int64) {
	var dst string
	if ev.Dst.IsValid() {
		dst = ev.Dst.String()
	}
	for _, a := range b.Aggs {
		if a.Parent == parent && a.Object == uint8(ev.Object) && a.Op == uint8(ev.Op) && a.Errno == ev.Errno {
			a.Count++
			if t < a.First {
				a.First, a.FirstDst = t, dst
			}
			if t >= a.Last {
				a.Last, a.LastDst = t, dst
			}
			return
		}
	}
	b.Aggs = append(b.Aggs, &aggSpan{Parent: parent, Object: uint8(ev.Object), Op: uint8(ev.Op), Errno: ev.Errno,
		Count: 1, First: t, Last: t, FirstDst: dst, LastDst: dst})
}

func spanName(obj event.Object, op event.Op) string { return obj.String() + " " + op.String() }

func (g *grouper) emitChange(b *burst, parent [8]byte, seq uint64, ev *event.Event) {
	kv := g.attrs.change(g.scratch[:0], ev, seq)
	kv = g.attrs.actorBrief(kv, &ev.Actor)
	s := newSpan(b.Trace, spanID(b.Trace, "change", strconv.FormatUint(seq, 10)), parent, spanName(ev.Object, ev.Op), ev.Time, ev.Time)
	s.Attributes = protoAttributes(kv)
	g.scratch = kv
	if ev.Errno != 0 {
		setError(s, event.ErrnoName(ev.Errno))
	}
	g.out = append(g.out, s)
}

// emitClosed sends what a burst holds until it ends: its causes' spans,
// its aggregated spans and its root, which carries the counts.
func (g *grouper) emitClosed(b *burst) {
	var actorEv event.Event
	// The burst's own encoding: it decodes unless the state file was
	// damaged, and then the root is still sent, unnamed.
	_ = event.DecodeBinary(b.Actor, &actorEv)
	actorAttrs := g.attrs.actor(nil, &actorEv.Actor)
	root := g.rootID(b)
	for _, c := range b.Causes {
		s := newSpan(b.Trace, spanID(b.Trace, "cause", c.Key), root, spanName(event.Object(c.Object), event.Op(c.Op)),
			time.Unix(0, c.First), time.Unix(0, c.Last))
		kv := append(slices.Clone(actorAttrs),
			attribute.String(keyObject, event.Object(c.Object).String()), attribute.String(keyOp, event.Op(c.Op).String()),
			attribute.String(keyOrigin, event.OriginNetlink.String()),
			attribute.Int64(keyCauseIfindex, int64(c.Ifindex)), attribute.Int(keyBurstKernel, c.Removals))
		if c.Prefix != "" {
			kv = append(kv, attribute.String(keyCausePrefix, c.Prefix))
		}
		s.Attributes = protoAttributes(kv)
		g.out = append(g.out, s)
	}
	for i, a := range b.Aggs {
		s := newSpan(b.Trace, spanID(b.Trace, "aggregate", strconv.Itoa(i)), a.Parent,
			spanName(event.Object(a.Object), event.Op(a.Op))+" (aggregated)", time.Unix(0, a.First), time.Unix(0, a.Last))
		kv := []attribute.KeyValue{
			attribute.String(keyObject, event.Object(a.Object).String()), attribute.String(keyOp, event.Op(a.Op).String()),
			attribute.Int(keyAggregated, a.Count),
		}
		if a.FirstDst != "" {
			kv = append(kv, attribute.String("routetrace.aggregated.first_destination", a.FirstDst),
				attribute.String("routetrace.aggregated.last_destination", a.LastDst))
		}
		if a.Errno != 0 {
			kv = append(kv, attribute.String(keyErrno, event.ErrnoName(a.Errno)))
			setError(s, event.ErrnoName(a.Errno))
		}
		s.Attributes = protoAttributes(kv)
		g.out = append(g.out, s)
	}
	s := newSpan(b.Trace, root, [8]byte{}, rootName(&actorEv.Actor), time.Unix(0, b.First), time.Unix(0, b.Last))
	kv := append(actorAttrs,
		attribute.Int(keyBurstChanges, b.Changes),
		attribute.Int(keyBurstErrors, b.Errors),
		attribute.Int(keyBurstKernel, b.Kernel),
		attribute.Int(keyBurstAggregated, b.Aggregated),
		attribute.Int64("routetrace.burst.first_seq", int64(b.FirstSeq)))
	for _, k := range sortedKeys(b.Counts) {
		kv = append(kv, attribute.Int(keyBurstCountPre+k, b.Counts[k]))
	}
	for _, k := range sortedKeys(b.Errnos) {
		kv = append(kv, attribute.Int(keyBurstErrnoPre+k, b.Errnos[k]))
	}
	s.Attributes = protoAttributes(kv)
	g.out = append(g.out, s)
}

// rootName names a burst by its actor in the user's terms:
// "systemd-networkd.service routing change".
func rootName(a *event.Actor) string {
	who := a.Comm.String()
	switch {
	case a.Kernel:
		who = "kernel"
	case a.Unknown():
		who = "unknown actor"
	case a.Process != nil && a.Process.Container != nil && a.Process.Container.Pod != nil:
		p := a.Process.Container.Pod
		who = p.Namespace + "/" + p.Name
	case a.Process != nil && a.Process.Unit != "":
		who = a.Process.Unit
	}
	return who + " routing change"
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (g *grouper) traceID(firstSeq uint64) [16]byte {
	h := sha256.New()
	h.Write(g.seed[:])
	h.Write(binary.BigEndian.AppendUint64(nil, firstSeq))
	return [16]byte(h.Sum(nil))
}

func (g *grouper) rootID(b *burst) [8]byte { return spanID(b.Trace, "root", "") }

func spanID(traceID [16]byte, kind, key string) [8]byte {
	h := sha256.New()
	h.Write(traceID[:])
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(key))
	id := [8]byte(h.Sum(nil))
	if id == ([8]byte{}) {
		id[7] = 1 // the zero ID is invalid
	}
	return id
}

// state is the grouper's state, to be saved with the journal's cursor.
func (g *grouper) state() ([]byte, error) {
	b, err := json.Marshal(&g.st)
	if err != nil {
		return nil, fmt.Errorf("encoding the open bursts: %w", err)
	}
	return b, nil
}

// restore continues from a saved state; an empty one starts afresh.
func (g *grouper) restore(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var st groupState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("decoding the exporter's saved bursts: %w", err)
	}
	if st.Version != groupStateVersion {
		return fmt.Errorf("the exporter's saved bursts are version %d, this routetrace reads %d", st.Version, groupStateVersion)
	}
	g.st = st
	return nil
}

// take hands over the finished spans.
func (g *grouper) take() []*span {
	out := g.out
	g.out = nil
	return out
}

// openBursts is how many bursts are waiting to close.
func (g *grouper) openBursts() int { return len(g.st.Bursts) }
