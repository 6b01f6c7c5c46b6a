package event

import (
	"bytes"
	"net/netip"
	"path"
	"strings"
)

// Filter selects events; an empty field selects everything. Within a field
// the values are alternatives, across fields all must match.
type Filter struct {
	Ops      []Op
	Objects  []Object
	Families []uint8
	Tables   []uint32
	// Dst matches events whose destination prefix lies inside one of these
	// (10.244.0.0/16 matches 10.244.3.0/24 and 10.244.1.5/32).
	Dst   []netip.Prefix
	Comms []string
	// Pids match the actor's process id (or, for kernel-internal changes,
	// the process whose request caused them).
	Pids []uint32

	// Enrichment filters, globs (path.Match): Units match the actor's
	// systemd unit; Pods "NAMESPACE/NAME" match the actor's pod or the
	// victim pod; Containers match the actor's container name or id (an
	// id prefix of 12 or more hex digits too); CNIs match the victim
	// link's CNI.
	Units      []string
	Pods       []string
	Containers []string
	CNIs       []string

	// Verdicts match what a policy said of the change (VerdictNone: no
	// verdict).
	Verdicts []Verdict
}

// Match reports whether ev passes the filter. It allocates nothing.
func (f *Filter) Match(ev *Event) bool {
	if len(f.Ops) > 0 && !contains(f.Ops, ev.Op) {
		return false
	}
	if len(f.Objects) > 0 && !contains(f.Objects, ev.Object) {
		return false
	}
	if len(f.Families) > 0 && !contains(f.Families, ev.Family) {
		return false
	}
	if len(f.Tables) > 0 && !contains(f.Tables, ev.Table) {
		return false
	}
	if len(f.Dst) > 0 && !f.matchDst(ev.Dst) {
		return false
	}
	if len(f.Verdicts) > 0 && !contains(f.Verdicts, ev.Enforcement.Verdict) {
		return false
	}
	actor := &ev.Actor
	if actor.Kernel && ev.Cause.Valid {
		actor = &ev.Cause.Actor
	}
	if len(f.Pids) > 0 && !contains(f.Pids, actor.Tgid) {
		return false
	}
	if len(f.Comms) > 0 {
		comm := actor.Comm.Bytes()
		if actor.Kernel {
			comm = []byte("kernel")
		}
		ok := false
		for _, c := range f.Comms {
			if len(c) > 15 {
				c = c[:15] // the kernel keeps 15 bytes of a comm
			}
			if bytes.Equal(comm, []byte(c)) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.Units)+len(f.Pods)+len(f.Containers)+len(f.CNIs) > 0 && !f.matchEnriched(ev, actor) {
		return false
	}
	return true
}

func (f *Filter) matchEnriched(ev *Event, actor *Actor) bool {
	p := actor.Process
	if len(f.Units) > 0 && (p == nil || !anyGlob(f.Units, p.Unit)) {
		return false
	}
	if len(f.Containers) > 0 {
		if p == nil || p.ContainerID == "" {
			return false
		}
		ok := anyGlob(f.Containers, p.ContainerID) || (p.Container != nil && anyGlob(f.Containers, p.Container.Name))
		for _, c := range f.Containers {
			if len(c) >= 12 && strings.HasPrefix(p.ContainerID, c) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.Pods) > 0 {
		var actorPod *Pod
		if p != nil && p.Container != nil {
			actorPod = p.Container.Pod
		}
		if !matchPod(f.Pods, actorPod) && !matchPod(f.Pods, ev.Victim.Pod) {
			return false
		}
	}
	if len(f.CNIs) > 0 && (ev.Victim.Link == nil || !anyGlob(f.CNIs, ev.Victim.Link.CNI)) {
		return false
	}
	return true
}

func matchPod(globs []string, p *Pod) bool {
	if p == nil {
		return false
	}
	for _, g := range globs {
		ns, name, ok := strings.Cut(g, "/")
		if !ok {
			ns, name = "*", g // a bare name matches in any namespace
		}
		if globMatch(ns, p.Namespace) && globMatch(name, p.Name) {
			return true
		}
	}
	return false
}

func anyGlob(globs []string, s string) bool {
	if s == "" {
		return false
	}
	for _, g := range globs {
		if globMatch(g, s) {
			return true
		}
	}
	return false
}

// globMatch is path.Match, with a malformed pattern matching nothing (the
// CLI checks patterns when it parses them, see ValidGlob).
func globMatch(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

// ValidGlob reports a malformed pattern.
func ValidGlob(pattern string) error {
	_, err := path.Match(pattern, "")
	return err
}

func (f *Filter) matchDst(p netip.Prefix) bool {
	if !p.IsValid() {
		return false
	}
	for _, want := range f.Dst {
		if want.Addr().Is4() == p.Addr().Is4() && want.Bits() <= p.Bits() && want.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
