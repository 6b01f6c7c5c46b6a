package forensics

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/routetrace/routetrace/event"
)

// textTime is how the text report writes a moment: to the second, which
// is what a person compares with other logs; the JSON has nanoseconds.
const textTime = "2006-01-02 15:04:05"

// WriteText writes the report for a person: a one-line answer, then one
// headline per route or rule (most specific first) with its cause and the
// actor's details the first time that actor appears, then the fixes, then
// what was read.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := &textWriter{r: r, w: bw, seen: map[actorKey]bool{}, bursts: map[burstKey]bool{}}
	p.write()
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

type textWriter struct {
	r      *Report
	w      *bufio.Writer
	seen   map[actorKey]bool // actors whose details were written
	bursts map[burstKey]bool // bursts whose counts were written
}

// burstKey tells one burst from another in the exported form.
type burstKey struct {
	actor      actorKey
	start, end time.Time
}

func (p *textWriter) line(format string, args ...any) {
	fmt.Fprintf(p.w, format, args...)
	p.w.WriteByte('\n')
}

func (p *textWriter) write() {
	r := p.r
	target := targetText(r.Target)
	if len(r.Changes) == 0 {
		p.nothing(target)
		return
	}
	p.line("%s: %s", target, p.verdict())
	p.w.WriteByte('\n')
	multiNetns := false
	for i := range r.Changes {
		if r.Changes[i].Event.Netns != r.Changes[0].Event.Netns {
			multiNetns = true
		}
	}
	for i := range r.Changes {
		p.change(&r.Changes[i], multiNetns)
	}
	for _, a := range r.Advice {
		p.w.WriteByte('\n')
		p.line("Fix (%s): %s", a.Actor, a.Why)
		for _, s := range a.Steps {
			p.line("  %s", s)
		}
	}
	p.w.WriteByte('\n')
	p.line("%s", p.journalLine())
}

// verdict is the one-line answer: how many of the routes and rules that
// cover the target are gone, back, or only added, and who removed them.
func (p *textWriter) verdict() string {
	var gone, back, added int
	var names []string
	byName := map[string]int{}
	for i := range p.r.Changes {
		c := &p.r.Changes[i]
		switch {
		case c.Removed():
			gone++
		case c.Back():
			back++
		default:
			added++
		}
		if ev, _ := culprit(c); ev != nil {
			n := shortName(ev)
			if byName[n] == 0 {
				names = append(names, n)
			}
			byName[n]++
		}
	}
	var parts []string
	if gone > 0 {
		parts = append(parts, fmt.Sprintf("%d last DELETED", gone))
	}
	if back > 0 {
		parts = append(parts, fmt.Sprintf("%d deleted and BACK", back))
	}
	if added > 0 {
		parts = append(parts, fmt.Sprintf("%d added or replaced", added))
	}
	n := len(p.r.Changes)
	covers := "routes and rules that cover it"
	if n == 1 {
		covers = "route or rule that covers it"
	}
	s := fmt.Sprintf("%d %s changed: %s.", n, covers, strings.Join(parts, ", "))
	switch len(names) {
	case 0:
	case 1:
		s += " Removed by " + names[0] + "."
	default:
		for i, name := range names {
			names[i] = fmt.Sprintf("%s (%d)", name, byName[name])
		}
		s += " Removed by " + strings.Join(names, ", ") + "."
	}
	return s
}

// shortName is who is responsible for a change, in a few words: the
// unit or pod and comm[pid].
func shortName(ev *event.Event) string {
	a := responsible(ev)
	switch k := keyOf(a, ev.Origin); {
	case k.kernel:
		return "the kernel"
	case k.unknown:
		return "an unknown process"
	}
	inner := safe(a.Comm.String()) + "[" + strconv.FormatUint(uint64(a.Tgid), 10) + "]"
	if name := userName(a.Process); name != "" {
		return name + " (" + inner + ")"
	}
	return inner
}

func (p *textWriter) nothing(target string) {
	r := p.r
	p.line("%s: nothing in the journal covers it: no route whose destination holds it, and no rule that selects it, changed.", target)
	switch {
	case r.EventsScanned == 0 && r.EventsBeforeSince > 0:
		p.line("  No events since %s: the journal's %d are older. Ask from earlier.", p.stamp(r.Since), r.EventsBeforeSince)
	case r.EventsScanned == 0:
		p.line("  The journal holds no events: was routetrace running (routetrace trace, or its daemon)?")
	default:
		p.line("  %s", p.journalLine())
	}
	p.line("  Look wider with: routetrace history --dst %s", widerPrefix(r.Target))
	if r.EventsScanned > 0 {
		p.line("  and check that routetrace was running when it broke: the journal starts %s.", p.when(r.From))
	}
}

func (p *textWriter) journalLine() string {
	r := p.r
	if r.EventsScanned == 0 {
		return "Journal: no events."
	}
	s := fmt.Sprintf("Journal: %d events scanned, %s to %s", r.EventsScanned, p.stamp(r.From), p.stamp(r.To))
	if r.EventsBeforeSince > 0 {
		s += fmt.Sprintf("; %d older ones left out (before %s)", r.EventsBeforeSince, p.stamp(r.Since))
	}
	if r.Undecodable > 0 {
		s += fmt.Sprintf("; %d undecodable %s skipped", r.Undecodable, plural(r.Undecodable, "record", "records"))
	}
	if r.ObjectsNotKept > 0 {
		s += fmt.Sprintf("; %d more matching routes and rules not kept (the target is very wide: ask about a narrower one)", r.ObjectsNotKept)
	}
	return s + "."
}

func (p *textWriter) change(c *Change, multiNetns bool) {
	desc := describe(&c.Event)
	if multiNetns {
		desc += fmt.Sprintf(" netns %d", c.Event.Netns)
	}
	ev := &c.Event
	if c.Back() {
		p.line("%s is BACK: %s %s by %s", desc, verb(ev.Op), p.when(ev.Time), p.actorName(ev))
		rm := &c.Removal.Event
		p.line("  it was %s %s by %s%s", verb(rm.Op), p.when(rm.Time), p.actorName(rm), p.burstText(rm, &c.Removal.Burst))
		p.details(rm)
		return
	}
	p.line("%s was %s %s by %s%s", desc, verb(ev.Op), p.when(ev.Time), p.actorName(ev), p.burstText(ev, &c.Burst))
	p.details(ev)
}

// details writes the cause of a kernel removal, and the responsible
// actor's details the first time it appears.
func (p *textWriter) details(ev *event.Event) {
	if ev.Origin == event.OriginKernel {
		p.line("  cause: %s", causeText(ev))
	}
	a := responsible(ev)
	k := keyOf(a, ev.Origin)
	if k.kernel || k.unknown || p.seen[k] {
		return
	}
	p.seen[k] = true
	for _, l := range actorLines(a) {
		p.line("  %s", l)
	}
}

func verb(op event.Op) string {
	switch op {
	case event.OpAdd:
		return "ADDED"
	case event.OpReplace:
		return "REPLACED"
	case event.OpDelete:
		return "DELETED"
	case event.OpFlush:
		return "FLUSHED"
	}
	return "CHANGED"
}

// when writes a moment and how long before the report it was.
func (p *textWriter) when(t time.Time) string {
	return p.stamp(t) + " (" + ago(p.r.Now.Sub(t)) + ")"
}

func (p *textWriter) stamp(t time.Time) string {
	loc := p.r.Location
	if loc == nil {
		loc = time.Local
	}
	return t.In(loc).Format(textTime)
}

func ago(d time.Duration) string {
	if d < 0 {
		return "after the report's time: clocks differ?"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 24*time.Hour:
		d = d.Round(time.Minute) // 5h59m59.9s reads as 6h
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh ago", h)
		}
		return fmt.Sprintf("%dh%dm ago", h, m)
	}
	d = d.Round(time.Hour)
	days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	if h == 0 {
		return fmt.Sprintf("%dd ago", days)
	}
	return fmt.Sprintf("%dd%dh ago", days, h)
}

// actorName is who made a change, in the user's terms first:
// "systemd-networkd.service (systemd-network[412], /usr/lib/systemd/systemd-networkd)".
func (p *textWriter) actorName(ev *event.Event) string {
	if ev.Origin == event.OriginKernel || ev.Actor.Kernel {
		if !ev.Cause.Valid || ev.Cause.Actor.Kernel {
			if ev.Path != event.PathNone {
				return "the kernel (" + ev.Path.String() + ")"
			}
			return "the kernel"
		}
		if ev.Cause.Actor.Unknown() {
			return "the kernel, for a process whose request was not captured"
		}
		return "the kernel, for " + processName(&ev.Cause.Actor)
	}
	if ev.Actor.Unknown() {
		return "an unknown process (its request was not captured)"
	}
	return processName(&ev.Actor)
}

// processName: the pod or unit, then comm[pid] and the executable.
func processName(a *event.Actor) string {
	inner := safe(a.Comm.String()) + "[" + strconv.FormatUint(uint64(a.Tgid), 10) + "]"
	proc := a.Process
	if proc != nil && proc.Exe != "" {
		inner += ", " + safe(proc.Exe)
	}
	if name := userName(proc); name != "" {
		return name + " (" + inner + ")"
	}
	return inner
}

// userName is the actor's name in the user's terms: its pod and
// container, else its systemd unit, else its container id.
func userName(proc *event.Process) string {
	if proc == nil {
		return ""
	}
	if c := proc.Container; c != nil && c.Pod != nil {
		s := "pod " + safe(c.Pod.Namespace) + "/" + safe(c.Pod.Name)
		if c.Name != "" {
			s += " container " + safe(c.Name)
		}
		return s
	}
	if proc.Unit != "" {
		return safe(proc.Unit)
	}
	if proc.ContainerID != "" {
		return "container " + proc.ContainerID[:min(12, len(proc.ContainerID))]
	}
	return ""
}

// actorLines are the actor's details: what the kernel recorded and what
// enrichment added, and its parent (the one level an event records).
func actorLines(a *event.Actor) []string {
	proc := a.Process
	first := fmt.Sprintf("actor: %s[%d] uid %d", safe(a.Comm.String()), a.Tgid, a.UID)
	if a.PPid != 0 || a.PComm[0] != 0 {
		first += fmt.Sprintf(", parent %s[%d]", safe(a.PComm.String()), a.PPid)
	}
	if proc == nil {
		return []string{first + "; not enriched (no unit, pod or command line recorded)"}
	}
	var extra []string
	if c := proc.Container; c != nil && c.Pod != nil {
		extra = append(extra, "pod "+safe(c.Pod.Namespace)+"/"+safe(c.Pod.Name))
		if c.Name != "" {
			extra = append(extra, "container "+safe(c.Name))
		}
	}
	if proc.Unit != "" && len(extra) == 0 {
		// A container's scope says less than its pod and name.
		extra = append(extra, "unit "+safe(proc.Unit))
	}
	if proc.ContainerID != "" {
		id := "container id " + proc.ContainerID[:min(12, len(proc.ContainerID))]
		if proc.Runtime != "" {
			id += " (" + proc.Runtime + ")"
		}
		extra = append(extra, id)
	}
	if len(extra) == 0 {
		extra = append(extra, "no unit or pod: not enriched")
	}
	if proc.Cgroup != "" {
		extra = append(extra, "cgroup "+safe(proc.Cgroup))
	}
	lines := []string{first + ", " + strings.Join(extra, ", ")}
	// The executable is in the headline already.
	if len(proc.Cmdline) > 0 {
		lines = append(lines, "command: "+safe(strings.Join(proc.Cmdline, " ")))
	}
	if proc.EnrichError != "" {
		lines = append(lines, "enrichment failed: "+safe(proc.EnrichError))
	}
	return lines
}

// causeText is the chain of a kernel removal: what the kernel did and the
// request that made it do it.
func causeText(ev *event.Event) string {
	s := "the kernel removed it"
	if ev.Path != event.PathNone {
		s += " (" + ev.Path.String() + ")"
	}
	c := &ev.Cause
	if !c.Valid {
		return s + "; no request caused it (a timer, or a cause routetrace could not see)"
	}
	who := "a process whose request was not captured"
	switch {
	case c.Actor.Kernel:
		who = "the kernel itself"
	case !c.Actor.Unknown():
		who = processName(&c.Actor)
	}
	dev := ""
	if c.Ifindex != 0 {
		dev = fmt.Sprintf("ifindex %d", c.Ifindex)
		if ev.Oif == c.Ifindex && ev.Dev[0] != 0 {
			dev = fmt.Sprintf("%s (ifindex %d)", safe(ev.Dev.String()), c.Ifindex)
		}
	}
	switch c.Object {
	case event.ObjectAddr:
		what := "deleted an address"
		if c.Prefix.IsValid() {
			what = "deleted address " + c.Prefix.String()
		}
		if dev != "" {
			what += " from " + dev
		}
		return s + " because " + who + " " + what
	case event.ObjectLink:
		link := "a link"
		if dev != "" {
			link = "link " + dev
		}
		if c.Op == event.OpDelete {
			return s + " because " + who + " deleted " + link
		}
		return s + " because " + who + " set " + link + " down"
	case event.ObjectNexthop:
		nh := "a nexthop"
		if ev.NexthopID != 0 {
			nh = fmt.Sprintf("nexthop %d", ev.NexthopID)
		}
		return s + " because " + who + " deleted " + nh
	}
	return s + " because of a request by " + who
}

// burstText is the headline's tail: what else the actor did around the
// change. "— one of 14 removals by it in 0.3 s (9 routes, 5 rules)", and
// for the next changes of the same burst only that they belong to it.
func (p *textWriter) burstText(ev *event.Event, b *Burst) string {
	k := burstKey{keyOf(responsible(ev), ev.Origin), b.Start, b.End}
	if p.bursts[k] {
		return " — in the same burst"
	}
	p.bursts[k] = true
	if isRemoval(ev.Op) {
		n := b.Removals()
		if n <= 1 {
			return " — its only removal around then"
		}
		counts := objectCounts(b.Routes.Removals(), b.Rules.Removals())
		if b.RoutesByKernel > 0 {
			counts = strings.Replace(counts, plural(b.Routes.Removals(), "route", "routes"),
				fmt.Sprintf("%s (%d by the kernel)", plural(b.Routes.Removals(), "route", "routes"), b.RoutesByKernel), 1)
		}
		s := fmt.Sprintf(" — one of %d removals by it in %s (%s)", n, spanText(b.Span()), counts)
		if adds := b.Routes.Add + b.Routes.Replace + b.Rules.Add + b.Rules.Replace; adds > 0 {
			s += fmt.Sprintf("; it also added or replaced %d", adds)
		}
		return s
	}
	n := b.Routes.Total() + b.Rules.Total()
	if n <= 1 {
		return " — its only change around then"
	}
	return fmt.Sprintf(" — one of %d changes by it in %s (%s)", n, spanText(b.Span()),
		objectCounts(b.Routes.Total(), b.Rules.Total()))
}

func objectCounts(routes, rules int) string {
	var parts []string
	if routes > 0 {
		parts = append(parts, fmt.Sprintf("%d %s", routes, plural(routes, "route", "routes")))
	}
	if rules > 0 {
		parts = append(parts, fmt.Sprintf("%d %s", rules, plural(rules, "rule", "rules")))
	}
	return strings.Join(parts, ", ")
}

func spanText(d time.Duration) string {
	if d < 100*time.Millisecond {
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	}
	if d < time.Minute {
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
	return d.Round(time.Second).String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// describe writes a route or rule the way ip(8) shows it, with the
// destination as a prefix (a /32 reads as what it is) and the pod behind it.
func describe(ev *event.Event) string {
	var b strings.Builder
	if ev.Object == event.ObjectRule {
		fmt.Fprintf(&b, "rule pref %d from %s", ev.Priority, selector(ev.Src))
		if ev.Dst.IsValid() {
			b.WriteString(" to " + selector(ev.Dst))
		}
		if n := ev.IifName.String(); n != "" {
			b.WriteString(" iif " + safe(n))
		}
		if n := ev.OifName.String(); n != "" {
			b.WriteString(" oif " + safe(n))
		}
		if ev.FwMark != 0 || ev.FwMask != 0 {
			fmt.Fprintf(&b, " fwmark %#x", ev.FwMark)
			if ev.FwMask != 0 && ev.FwMask != 0xffffffff {
				fmt.Fprintf(&b, "/%#x", ev.FwMask)
			}
		}
		switch ev.Action {
		case event.RuleActionToTable, event.RuleActionUnspec:
			if ev.Table != 0 || ev.Action == event.RuleActionToTable {
				b.WriteString(" lookup " + event.TableName(ev.Table))
			}
		case event.RuleActionGoto:
			fmt.Fprintf(&b, " goto %d", ev.Goto)
		default:
			name, _ := event.RuleActionName(ev.Action)
			b.WriteString(" " + name)
		}
		return b.String()
	}
	if ev.Type != 0 && ev.Type != event.RouteTypeUnicast {
		b.WriteString(event.RouteTypeName(ev.Type) + " ")
	}
	dst := routeDst(ev)
	if dst.Bits() == 0 {
		b.WriteString("default")
		if dst.Addr().Is6() {
			b.WriteString(" (::/0)")
		}
	} else {
		b.WriteString(dst.String())
	}
	if ev.Src.IsValid() {
		b.WriteString(" from " + ev.Src.String())
	}
	if ev.Gateway.IsValid() {
		b.WriteString(" via " + ev.Gateway.String())
	}
	if n := ev.Dev.String(); n != "" {
		b.WriteString(" dev " + safe(n))
	} else if ev.Oif != 0 {
		fmt.Fprintf(&b, " oif %d", ev.Oif)
	}
	b.WriteString(" table " + event.TableName(ev.Table))
	if ev.Protocol != 0 {
		b.WriteString(" proto " + event.ProtocolName(ev.Protocol))
	}
	if v := &ev.Victim; v.Pod != nil {
		b.WriteString(" (pod " + safe(v.Pod.Namespace) + "/" + safe(v.Pod.Name) + ")")
	} else if v.Pods > 0 {
		fmt.Fprintf(&b, " (%d pods)", v.Pods)
	}
	return b.String()
}

func selector(p netip.Prefix) string {
	if !p.IsValid() || p.Bits() == 0 {
		return "all"
	}
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// targetText writes the target as it was asked: an address without /32.
func targetText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// widerPrefix is a suggestion for a wider search: the /16 (IPv4) or /48
// (IPv6) around the target, or the target itself when it is wider.
func widerPrefix(p netip.Prefix) string {
	bits := 16
	if p.Addr().Is6() {
		bits = 48
	}
	if p.Bits() <= bits {
		return p.String()
	}
	w, _ := p.Addr().Prefix(bits)
	return w.String()
}

// safe shows a name a process chose (its comm, its argv) without letting
// control bytes rewrite the terminal.
func safe(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (!unicode.IsPrint(r) && r != ' ') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || (!unicode.IsPrint(r) && r != ' ') {
			for _, c := range []byte(s[i : i+size]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
