package exporter

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/routetrace/routetrace/event"
)

// TextOptions tunes the terminal sink.
type TextOptions struct {
	// Color marks operations and failures with ANSI colours.
	Color bool
	// Location is the time zone of the time column; nil means time.Local.
	Location *time.Location
}

// Text writes one aligned line per event for a person watching a terminal.
// Each line is written at once, so w should not buffer.
type Text struct {
	w    io.Writer
	opts TextOptions
	line []byte // reused between events
}

// NewText returns a terminal sink on w. Close does not close w.
func NewText(w io.Writer, opts TextOptions) *Text {
	if opts.Location == nil {
		opts.Location = time.Local
	}
	return &Text{w: w, opts: opts, line: make([]byte, 0, 256)}
}

// Column widths. A longer value pushes the rest of its line right rather
// than being cut: a truncated prefix or name would mislead.
const (
	opWidth     = 7
	objectWidth = 8
	descWidth   = 52
	actorWidth  = 29
)

const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiDim    = "\x1b[2m"
)

// Write writes ev as one line.
func (t *Text) Write(ev *event.Event) error {
	b := ev.Time.In(t.opts.Location).AppendFormat(t.line[:0], "15:04:05.000")
	b = append(b, "  "...)

	op := ev.Op.String()
	b = t.colored(b, opColor(ev.Op), op)
	b = appendSpaces(b, opWidth-len(op)+1)
	obj := ev.Object.String()
	b = append(b, obj...)
	b = appendSpaces(b, objectWidth-len(obj)+1)

	start := len(b)
	b = appendDescription(b, ev)
	b = appendVictimText(b, &ev.Victim)
	b = padTo(b, start, descWidth)
	b = append(b, "  "...)
	start = len(b)
	b = appendActorText(b, ev)
	b = padTo(b, start, actorWidth)
	b = append(b, "  "...)

	if ev.Errno == 0 {
		b = t.colored(b, ansiDim, "ok")
	} else {
		if t.opts.Color {
			b = append(b, ansiRed...)
		}
		b = event.AppendErrno(b, ev.Errno)
		if t.opts.Color {
			b = append(b, ansiReset...)
		}
	}
	b = t.appendVerdict(b, &ev.Enforcement)
	b = append(b, '\n')
	t.line = b
	if _, err := t.w.Write(b); err != nil {
		return fmt.Errorf("writing text line: %w", err)
	}
	return nil
}

// appendVerdict names what a policy did: "BLOCKED", "WOULD-BLOCK" or
// "REPAIRED after 3.2ms", then the protect entry and any reason.
func (t *Text) appendVerdict(b []byte, f *event.Enforcement) []byte {
	if f.Verdict == event.VerdictNone {
		return b
	}
	b = append(b, "  "...)
	color := ansiRed
	if f.Verdict == event.VerdictRepaired {
		color = ansiYellow
	}
	b = t.colored(b, color, verdictLabels[f.Verdict])
	if f.Verdict == event.VerdictRepaired {
		b = append(b, " after "...)
		b = append(b, f.Missing.Round(10*time.Microsecond).String()...)
	}
	if f.Rule != "" {
		b = appendSafe(append(b, " by "...), []byte(f.Rule))
	}
	if f.Reason != "" {
		b = appendSafe(append(b, ": "...), []byte(f.Reason))
	}
	return b
}

var verdictLabels = [...]string{event.VerdictWouldBlock: "WOULD-BLOCK", event.VerdictBlocked: "BLOCKED", event.VerdictRepaired: "REPAIRED"}

// Close does nothing: every line has already been written.
func (t *Text) Close() error { return nil }

func opColor(op event.Op) string {
	switch op {
	case event.OpAdd:
		return ansiGreen
	case event.OpReplace:
		return ansiYellow
	case event.OpDelete, event.OpFlush:
		return ansiRed
	}
	return ""
}

func (t *Text) colored(b []byte, color, s string) []byte {
	if !t.opts.Color || color == "" {
		return append(b, s...)
	}
	b = append(b, color...)
	b = append(b, s...)
	return append(b, ansiReset...)
}

func appendSpaces(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, ' ')
	}
	return b
}

// padTo pads b[start:] with spaces to width columns, counting runes so
// that UTF-8 names do not shift the columns.
func padTo(b []byte, start, width int) []byte {
	return appendSpaces(b, width-utf8.RuneCount(b[start:]))
}

// appendDescription appends the changed object the way ip(8) prints it.
// Each piece starts with a space, and the first one is dropped at the end.
func appendDescription(b []byte, ev *event.Event) []byte {
	start := len(b)
	switch {
	case ev.Op == event.OpFlush:
		b = append(b, " table "...)
		b = event.AppendTable(b, ev.Table)
		b = append(b, ": "...)
		b = strconv.AppendUint(b, uint64(ev.Count), 10)
		if ev.Count == 1 {
			b = append(b, " route"...)
		} else {
			b = append(b, " routes"...)
		}
	case ev.Object == event.ObjectRule:
		b = appendRuleText(b, ev)
	case ev.Object == event.ObjectNexthop:
		b = appendNexthopText(b, ev)
	default:
		b = appendRouteText(b, ev)
	}
	if len(b) > start && b[start] == ' ' {
		b = append(b[:start], b[start+1:]...)
	}
	return b
}

func appendRouteText(b []byte, ev *event.Event) []byte {
	if ev.Type != 0 && ev.Type != event.RouteTypeUnicast {
		b = append(append(b, ' '), event.RouteTypeName(ev.Type)...)
	}
	if ev.Dst.IsValid() {
		b = appendPrefixText(append(b, ' '), ev.Dst, "default")
	}
	if ev.Src.IsValid() {
		b = appendPrefixText(append(b, " from "...), ev.Src, "all")
	}
	if ev.TOS != 0 {
		b = appendHex(append(b, " tos "...), uint64(ev.TOS))
	}
	if ev.Gateway.IsValid() {
		b = ev.Gateway.AppendTo(append(b, " via "...))
	}
	b = appendDev(b, ev)
	b = event.AppendTable(append(b, " table "...), ev.Table)
	if ev.Protocol != 0 {
		b = append(append(b, " proto "...), event.ProtocolName(ev.Protocol)...)
	}
	// Global is the default, and no installed route has scope nowhere:
	// ip route del sends it to mean any scope.
	if ev.Scope != 0 && ev.Scope != event.ScopeNowhere {
		b = append(append(b, " scope "...), event.ScopeName(ev.Scope)...)
	}
	if ev.Priority != 0 {
		b = strconv.AppendUint(append(b, " metric "...), uint64(ev.Priority), 10)
	}
	if ev.NexthopID != 0 {
		b = strconv.AppendUint(append(b, " nhid "...), uint64(ev.NexthopID), 10)
	}
	if ev.Multipath {
		b = append(b, " multipath"...)
	}
	return b
}

func appendRuleText(b []byte, ev *event.Event) []byte {
	b = strconv.AppendUint(append(b, " pref "...), uint64(ev.Priority), 10)
	b = append(b, " from "...)
	if ev.Src.IsValid() {
		b = appendPrefixText(b, ev.Src, "all")
	} else {
		b = append(b, "all"...)
	}
	if ev.Dst.IsValid() {
		b = appendPrefixText(append(b, " to "...), ev.Dst, "all")
	}
	if ev.TOS != 0 {
		b = appendHex(append(b, " tos "...), uint64(ev.TOS))
	}
	if n := ev.IifName.Bytes(); len(n) > 0 {
		b = appendSafe(append(b, " iif "...), n)
	}
	if n := ev.OifName.Bytes(); len(n) > 0 {
		b = appendSafe(append(b, " oif "...), n)
	}
	if ev.FwMark != 0 || ev.FwMask != 0 {
		b = appendHex(append(b, " fwmark "...), uint64(ev.FwMark))
		if ev.FwMask != 0 && ev.FwMask != 0xffffffff {
			b = appendHex(append(b, '/'), uint64(ev.FwMask))
		}
	}
	switch ev.Action {
	case event.RuleActionToTable:
		b = event.AppendTable(append(b, " lookup "...), ev.Table)
	case event.RuleActionGoto:
		b = strconv.AppendUint(append(b, " goto "...), uint64(ev.Goto), 10)
	case event.RuleActionUnspec:
		// A delete may name only the table to match; ip rule shows that
		// as a lookup too.
		if ev.Table != 0 {
			b = event.AppendTable(append(b, " lookup "...), ev.Table)
		}
	default:
		if name, ok := event.RuleActionName(ev.Action); ok {
			b = append(append(b, ' '), name...)
		} else {
			b = strconv.AppendUint(append(b, " action "...), uint64(ev.Action), 10)
		}
	}
	return b
}

func appendNexthopText(b []byte, ev *event.Event) []byte {
	b = strconv.AppendUint(append(b, " id "...), uint64(ev.NexthopID), 10)
	if ev.Gateway.IsValid() {
		b = ev.Gateway.AppendTo(append(b, " via "...))
	}
	b = appendDev(b, ev)
	if ev.Type == event.RouteTypeBlackhole {
		b = append(b, " blackhole"...)
	}
	if ev.Multipath {
		b = append(b, " group"...)
	}
	return b
}

func appendDev(b []byte, ev *event.Event) []byte {
	if n := ev.Dev.Bytes(); len(n) > 0 {
		return appendSafe(append(b, " dev "...), n)
	}
	if ev.Oif != 0 {
		return strconv.AppendUint(append(b, " oif "...), uint64(ev.Oif), 10)
	}
	return b
}

// appendPrefixText prints a prefix as ip(8) does: a host prefix as its
// address and a zero-length one as the word all/default.
func appendPrefixText(b []byte, p netip.Prefix, zero string) []byte {
	switch {
	case p.Bits() == 0:
		return append(b, zero...)
	case p.IsSingleIP():
		return p.Addr().AppendTo(b)
	}
	return p.AppendTo(b)
}

func appendHex(b []byte, v uint64) []byte {
	return strconv.AppendUint(append(b, "0x"...), v, 16)
}

// appendActorText appends who made the change: comm[pid] uid=N for a
// process, kernel for the kernel, unknown when no task was captured, then the kernel path and what the kernel
// was reacting to.
func appendActorText(b []byte, ev *event.Event) []byte {
	switch {
	case ev.Origin == event.OriginKernel || ev.Actor.Kernel:
		b = append(b, "kernel"...)
	case ev.Actor.Unknown():
		b = append(b, "unknown"...)
	default:
		b = appendProcess(b, &ev.Actor)
		b = strconv.AppendUint(append(b, " uid="...), uint64(ev.Actor.UID), 10)
	}
	if ev.Path != event.PathNone {
		b = append(append(b, " via "...), ev.Path.String()...)
	}
	if c := &ev.Cause; c.Valid {
		b = append(b, " ("...)
		switch c.Object {
		case event.ObjectAddr:
			b = append(b, "address"...)
			if c.Prefix.IsValid() {
				b = c.Prefix.AppendTo(append(b, ' '))
			} else if c.Ifindex != 0 {
				b = strconv.AppendUint(append(b, " on "...), uint64(c.Ifindex), 10)
			}
			b = append(append(b, ' '), causeVerb(c.Op)...)
		case event.ObjectLink:
			b = append(b, "link"...)
			if c.Ifindex != 0 {
				b = strconv.AppendUint(append(b, ' '), uint64(c.Ifindex), 10)
			}
			// The kernel flushes a link's routes when it goes down as
			// well as when it goes away; the decoder reports down as a
			// replace.
			if c.Op == event.OpDelete {
				b = append(b, " deleted"...)
			} else {
				b = append(b, " down"...)
			}
		case event.ObjectNexthop:
			b = append(b, "nexthop"...)
			if ev.NexthopID != 0 {
				b = strconv.AppendUint(append(b, ' '), uint64(ev.NexthopID), 10)
			}
			b = append(append(b, ' '), causeVerb(c.Op)...)
		default:
			b = append(b, "requested"...)
		}
		switch {
		case c.Actor.Kernel:
		case c.Actor.Unknown():
			b = append(b, " by unknown"...)
		default:
			b = appendProcess(append(b, " by "...), &c.Actor)
		}
		b = append(b, ')')
	}
	return b
}

func causeVerb(op event.Op) string {
	switch op {
	case event.OpAdd:
		return "added"
	case event.OpDelete:
		return "deleted"
	case event.OpFlush:
		return "flushed"
	}
	return "changed"
}

// appendVictimText names the pod behind the route, or how many pods its
// destination covers, and a CNI's interface.
func appendVictimText(b []byte, v *event.Victim) []byte {
	if l := v.Link; l != nil && l.CNI != "" {
		b = appendSafe(append(b, " ["...), []byte(l.CNI))
		if l.Kind != "" {
			b = appendSafe(append(b, ' '), []byte(l.Kind))
		}
		b = append(b, ']')
	}
	switch {
	case v.Pod != nil:
		b = append(b, " pod "...)
		b = appendSafe(b, []byte(v.Pod.Namespace))
		b = appendSafe(append(b, '/'), []byte(v.Pod.Name))
	case v.Pods > 0:
		b = strconv.AppendUint(append(b, " pods="...), uint64(v.Pods), 10)
	}
	return b
}

// appendProcess names the actor: its pod and container, else its systemd
// unit, then comm[pid] (the pid is what an SRE looks up next).
func appendProcess(b []byte, a *event.Actor) []byte {
	if p := a.Process; p != nil {
		switch c := p.Container; {
		case c != nil && c.Pod != nil:
			b = appendSafe(b, []byte(c.Pod.Namespace))
			b = appendSafe(append(b, '/'), []byte(c.Pod.Name))
			if c.Name != "" {
				b = appendSafe(append(b, " ("...), []byte(c.Name))
				b = append(b, ')')
			}
			b = append(b, ' ')
		case p.Unit != "":
			b = append(appendSafe(b, []byte(p.Unit)), ' ')
		case p.ContainerID != "":
			b = append(appendSafe(append(b, "container "...), []byte(p.ContainerID[:min(12, len(p.ContainerID))])), ' ')
		}
	}
	if comm := a.Comm.Bytes(); len(comm) > 0 {
		b = appendSafe(b, comm)
	} else {
		b = append(b, '?')
	}
	b = append(b, '[')
	b = strconv.AppendUint(b, uint64(a.Tgid), 10)
	return append(b, ']')
}

// appendSafe copies a kernel name for a terminal. A process chooses its own
// comm, so control bytes (an escape sequence could rewrite the screen) and
// invalid UTF-8 are shown as \xNN instead.
func appendSafe(b, s []byte) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if r == '\\' || (r == utf8.RuneError && size == 1) || !unicode.IsPrint(r) && r != ' ' {
			for _, c := range s[i : i+size] {
				b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			}
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}
