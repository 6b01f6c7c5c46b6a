package policy

import (
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/routetrace/routetrace/event"
)

// mainTable is RT_TABLE_MAIN, the table of a route event that names none.
const mainTable = 254

// Judgement is what a policy says of one change.
type Judgement struct {
	// Rule is the protect entry the change touched; nil when it touched
	// nothing protected.
	Rule *Protect
	// Counted: the operation counts on that entry (see the package doc).
	Counted bool
	// Allowed: the change counted and its actor matches an allow entry.
	Allowed bool
}

// Enforced reports that the policy objects to the change: it counted and
// its actor is not allowed.
func (j Judgement) Enforced() bool { return j.Counted && !j.Allowed }

// Judge decides on one change. It allocates nothing.
func (p *Policy) Judge(ev *event.Event) Judgement {
	var j Judgement
	for i := range p.Protect {
		pr := &p.Protect[i]
		if !pr.matches(ev) {
			continue
		}
		if j.Rule == nil {
			j.Rule = pr
		}
		if p.counts(pr, ev) {
			j.Rule, j.Counted = pr, true
			break
		}
	}
	if j.Counted {
		j.Allowed = p.AllowedActor(changeActor(ev))
	}
	return j
}

// Apply judges ev and, when the policy objects to it, sets
// ev.Enforcement's Verdict to verdict (VerdictWouldBlock in audit,
// VerdictRepaired once repair put the state back) and Rule to the entry.
// A verdict already set (the kernel side's VerdictBlocked) is kept. It
// allocates nothing for a policy from Parse, Load or Auto.
func (p *Policy) Apply(ev *event.Event, verdict event.Verdict) Judgement {
	j := p.Judge(ev)
	if j.Enforced() && ev.Enforcement.Verdict == event.VerdictNone {
		ev.Enforcement.Verdict = verdict
		ev.Enforcement.Rule = j.Rule.String()
	}
	return j
}

// Protects returns the first protect entry ev's object matches, whatever
// the operation; nil when none does.
func (p *Policy) Protects(ev *event.Event) *Protect {
	for i := range p.Protect {
		if p.Protect[i].matches(ev) {
			return &p.Protect[i]
		}
	}
	return nil
}

// counts reports whether ev's operation on the state pr protects counts.
func (p *Policy) counts(pr *Protect, ev *event.Event) bool {
	if ev.Errno != 0 {
		return false
	}
	switch ev.Op {
	case event.OpDelete, event.OpFlush:
		return true
	case event.OpReplace:
		return p.Operations.Replace
	case event.OpAdd:
		return p.Operations.MoreSpecific && pr.Prefix.IsValid()
	}
	return false
}

// changeActor is who is answerable for ev: nil when nobody known is.
func changeActor(ev *event.Event) *event.Actor {
	if ev.Origin == event.OriginKernel || ev.Actor.Kernel {
		if ev.Cause.Valid {
			return &ev.Cause.Actor
		}
		return nil
	}
	return &ev.Actor
}

// matches reports whether ev's object is what pr protects.
func (pr *Protect) matches(ev *event.Event) bool {
	switch ev.Object {
	case event.ObjectRoute:
		switch {
		case pr.Prefix.IsValid():
			return inside(ev.Dst, pr.Prefix)
		case pr.Interface != "":
			return matchDev(pr.Interface, ev)
		case pr.Table != 0:
			t := ev.Table
			if t == 0 {
				t = mainTable
			}
			return t == pr.Table
		case pr.HasProtocol:
			return ev.Op != event.OpFlush && ev.Protocol == pr.Protocol
		}
	case event.ObjectRule:
		if r := pr.Rule; r != nil {
			return (!r.HasPriority || r.PriorityMin <= ev.Priority && ev.Priority <= r.PriorityMax) &&
				(r.Table == 0 || ev.Table == 0 || ev.Table == r.Table) &&
				(r.Family == 0 || ev.Family == r.Family)
		}
	case event.ObjectNexthop:
		if n := pr.Nexthop; n != nil {
			return (n.IDMin == 0 && n.IDMax == 0 || n.IDMin <= ev.NexthopID && ev.NexthopID <= n.IDMax) &&
				(!n.Groups || ev.Multipath)
		}
	}
	return false
}

// inside reports whether dst lies within pfx: same family, as long or
// longer, and its address in it.
func inside(dst, pfx netip.Prefix) bool {
	return dst.IsValid() && dst.Addr().Is4() == pfx.Addr().Is4() && dst.Bits() >= pfx.Bits() && pfx.Contains(dst.Addr())
}

// matchDev matches a route's device name: ev.Dev, or the enricher's link
// when the tracer did not name it.
func matchDev(pattern string, ev *event.Event) bool {
	if dev := ev.Dev.Bytes(); len(dev) > 0 {
		return globMatchBytes(pattern, dev)
	}
	if l := ev.Victim.Link; l != nil {
		return globMatch(pattern, l.Name)
	}
	return false
}

// Allowed reports whether the actor answerable for ev (its cause's, for a
// kernel-internal change) matches an allow entry. It allocates nothing.
func (p *Policy) Allowed(ev *event.Event) bool { return p.AllowedActor(changeActor(ev)) }

// AllowedActor reports whether an allow entry matches actor a. A nil,
// kernel or unknown actor is never allowed. It allocates nothing.
func (p *Policy) AllowedActor(a *event.Actor) bool {
	if a == nil || a.Kernel || a.Unknown() {
		return false
	}
	for i := range p.Allow {
		if p.Allow[i].matches(a) {
			return true
		}
	}
	return false
}

// ProtectedInterface returns the index of the first Interface entry that
// matches the link name, -1 when none does: the BPF enforcer protects
// routes by ifindex.
func (p *Policy) ProtectedInterface(name string) int {
	for i := range p.Protect {
		if pr := &p.Protect[i]; pr.Interface != "" && globMatch(pr.Interface, name) {
			return i
		}
	}
	return -1
}

// AllowsByCgroup reports whether an allow entry names processes by what
// their cgroup says (unit, pod, container or cgroup path), the ones the
// BPF enforcer checks by cgroup id.
func (p *Policy) AllowsByCgroup() bool {
	for i := range p.Allow {
		if p.Allow[i].byCgroup() {
			return true
		}
	}
	return false
}

// AllowsProcess reports whether an allow entry of those AllowsByCgroup
// counts matches proc, the processes of one cgroup.
func (p *Policy) AllowsProcess(proc *event.Process) bool {
	if proc == nil {
		return false
	}
	a := event.Actor{Process: proc}
	for i := range p.Allow {
		if al := &p.Allow[i]; al.byCgroup() && al.matches(&a) {
			return true
		}
	}
	return false
}

// AllowedExes returns the exe globs, which the BPF enforcer resolves to
// inodes.
func (p *Policy) AllowedExes() []string {
	var out []string
	for i := range p.Allow {
		if p.Allow[i].Exe != "" {
			out = append(out, p.Allow[i].Exe)
		}
	}
	return out
}

func (al *Allow) byCgroup() bool {
	return al.Unit != "" || al.Pod != "" || al.Container != "" || al.Cgroup != ""
}

// matches reports whether al matches a; unit, pod and container go
// through event.Filter so that allow entries and trace filters read
// globs the same way.
func (al *Allow) matches(a *event.Actor) bool {
	if al.Comm != "" {
		return globMatchBytes(al.Comm, a.Comm.Bytes())
	}
	proc := a.Process
	if proc == nil {
		return false
	}
	switch {
	case al.Cgroup != "":
		return globMatch(al.Cgroup, proc.Cgroup)
	case al.Exe != "":
		return globMatch(al.Exe, proc.Exe)
	}
	globs := [1]string{}
	var f event.Filter
	switch {
	case al.Unit != "":
		globs[0], f.Units = al.Unit, globs[:]
	case al.Pod != "":
		globs[0], f.Pods = al.Pod, globs[:]
	case al.Container != "":
		globs[0], f.Containers = al.Container, globs[:]
	default:
		return false
	}
	// An event holding only the actor: Filter's pod glob also matches a
	// change's victim, and an allow entry must not.
	probe := event.Event{Actor: event.Actor{Process: proc}}
	return f.Match(&probe)
}

// globMatch is path.Match with a malformed pattern matching nothing (Parse
// refuses those) and "" never matched: an unknown value is not a match.
func globMatch(pattern, s string) bool {
	if s == "" {
		return false
	}
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

func globMatchBytes(pattern string, b []byte) bool {
	return globMatch(pattern, string(b))
}

// String names the entry as the file gives it, with its position:
// "protect[0] prefix 10.244.0.0/16 (policy.yaml:3)".
func (pr *Protect) String() string {
	if pr.label != "" {
		return pr.label
	}
	return pr.makeLabel()
}

func (pr *Protect) makeLabel() string {
	var b strings.Builder
	fmt.Fprintf(&b, "protect[%d] %s", pr.Index, pr.selectorText())
	switch {
	case pr.At.File != "" && pr.At.Line > 0:
		fmt.Fprintf(&b, " (%s:%d)", pr.At.File, pr.At.Line)
	case pr.At.File != "":
		fmt.Fprintf(&b, " (%s)", pr.At.File)
	}
	return b.String()
}

// selectorText is the selector as the file writes it, on one line.
func (pr *Protect) selectorText() string {
	switch {
	case pr.Prefix.IsValid():
		return "prefix " + pr.Prefix.String()
	case pr.Interface != "":
		return "interface " + pr.Interface
	case pr.Table != 0:
		return "table " + tableText(pr.Table)
	case pr.HasProtocol:
		return "protocol " + protocolText(pr.Protocol)
	case pr.Rule != nil:
		parts := []string{"rule"}
		for _, kv := range pr.Rule.fields() {
			parts = append(parts, kv[0], kv[1])
		}
		return strings.Join(parts, " ")
	case pr.Nexthop != nil:
		parts := []string{"nexthop"}
		for _, kv := range pr.Nexthop.fields() {
			parts = append(parts, kv[0], kv[1])
		}
		return strings.Join(parts, " ")
	}
	return "(no selector)"
}

// label numbers the entries and makes their names once.
func (p *Policy) label() {
	for i := range p.Protect {
		pr := &p.Protect[i]
		pr.Index = i
		if pr.At.File == "" {
			pr.At.File = p.Source
		}
		pr.label = pr.makeLabel()
	}
	for i := range p.Allow {
		p.Allow[i].Index = i
		if p.Allow[i].At.File == "" {
			p.Allow[i].At.File = p.Source
		}
	}
}
