package event

import (
	"bytes"
	"net/netip"
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
	return true
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
