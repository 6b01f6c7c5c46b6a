package enforce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/tracer"
)

// Reasons, as in bpf/include/policy.h (enum enf_reason). ReasonProtected
// is a match; every other reason is fail-closed.
const (
	ReasonProtected = iota
	ReasonBadLen
	ReasonShort
	ReasonBadAttr
	ReasonRead
	ReasonBound
	ReasonNoPriority
	ReasonBadNexthop
	ReasonLinkByName
	ReasonNonlinear
	ReasonNoScratch
	ReasonCompat
)

var reasonText = [...]string{
	ReasonProtected:  "",
	ReasonBadLen:     "fail closed: nlmsg_len below the header or past the request",
	ReasonShort:      "fail closed: message shorter than its header",
	ReasonBadAttr:    "fail closed: bad attribute length",
	ReasonRead:       "fail closed: request unreadable",
	ReasonBound:      "fail closed: loop bound reached",
	ReasonNoPriority: "fail closed: rule delete without priority",
	ReasonBadNexthop: "fail closed: malformed multipath nexthop",
	ReasonLinkByName: "fail closed: link named only by name where interfaces are protected",
	ReasonNonlinear:  "fail closed: request not in one piece",
	ReasonNoScratch:  "fail closed: no scratch memory",
	ReasonCompat:     "fail closed: route ioctl of a 32-bit task",
}

// ReasonText is the Enforcement.Reason of a reason code.
func ReasonText(r uint32) string {
	if int(r) < len(reasonText) {
		return reasonText[r]
	}
	return fmt.Sprintf("fail closed: reason %d", r)
}

// verdictSize and the offset of the verdict's own fields: enf_verdict is
// an rt_event followed by them.
const verdictSize = int(unsafe.Sizeof(enforceEnfVerdict{}))

// Verdict is a refusal as the ring carries it, beyond its event.
type Verdict struct {
	Rule, Reason, MsgIndex, Generation uint32
}

// RuleNamer names rule id rule of the policy of a generation: the
// Protect entry's String. A reload changes what an id means, and a verdict
// read after it may still be of the policy before.
type RuleNamer func(generation, rule uint32) string

// Names is the RuleNamer of one policy for every generation: rules[i]
// names rule id i.
func Names(rules []string) RuleNamer {
	return func(_, rule uint32) string {
		if int(rule) < len(rules) {
			return rules[rule]
		}
		return ""
	}
}

// decodeVerdict decodes one enf_verdict record; rules names rule ids.
func decodeVerdict(d *tracer.Decoder, raw []byte, rules RuleNamer, ev *event.Event) (Verdict, error) {
	if len(raw) < verdictSize {
		return Verdict{}, fmt.Errorf("verdict record of %d bytes, want %d", len(raw), verdictSize)
	}
	if err := d.Decode(raw, ev); err != nil {
		return Verdict{}, err
	}
	off := int(unsafe.Offsetof(enforceEnfVerdict{}.Rule))
	v := Verdict{
		Rule:       binary.NativeEndian.Uint32(raw[off:]),
		Reason:     binary.NativeEndian.Uint32(raw[off+4:]),
		MsgIndex:   binary.NativeEndian.Uint32(raw[off+8:]),
		Generation: binary.NativeEndian.Uint32(raw[off+12:]),
	}
	ev.Enforcement = event.Enforcement{Verdict: event.VerdictBlocked, Reason: ReasonText(v.Reason)}
	ev.Enforcement.Rule = rules(v.Generation, v.Rule)
	return v, nil
}

// Run reads the verdicts until ctx is done, emitting one blocked event per
// refused request, its rule named by rules.
func (e *Enforcer) Run(ctx context.Context, rules RuleNamer, emit func(*event.Event)) error {
	return runRing(ctx, e.objs.Events, rules, emit, e.log)
}

func runRing(ctx context.Context, events *ebpf.Map, rules RuleNamer, emit func(*event.Event), log interface {
	Warn(string, ...any)
}) error {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return fmt.Errorf("opening the verdict ring: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = rd.Close() })
	defer stop()
	defer rd.Close()
	d := tracer.NewDecoder()
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			log.Warn("reading the verdict ring", "error", err)
			continue
		}
		var ev event.Event
		if _, err := decodeVerdict(d, rec.RawSample, rules, &ev); err != nil {
			log.Warn("decoding a verdict", "error", err)
			continue
		}
		emit(&ev)
	}
}

// Stats counts the enforcer's work since it was loaded (or since the
// pinned maps were created).
type Stats struct {
	Checked    uint64 // requests judged in enforced namespaces
	Blocked    uint64 // refused
	FailClosed uint64 // refused for a fail-closed reason
	Lost       uint64 // verdict records the ring had no room for
}

// Stats sums the per-CPU counters.
func (e *Enforcer) Stats() (Stats, error) { return readStats(e.objs.Stats) }

func readStats(m *ebpf.Map) (Stats, error) {
	var out [4]uint64
	for i := range out {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("reading enf_stats: %w", err)
		}
		for _, n := range per {
			out[i] += n
		}
	}
	return Stats{Checked: out[0], Blocked: out[1], FailClosed: out[2], Lost: out[3]}, nil
}
