// Package event is routetrace's one event model: every attach tier decodes
// into an Event and every sink (terminal, JSON lines, OpenTelemetry,
// metrics) consumes one. An Event holds no heap values of its own (names
// are fixed arrays, addresses netip values; enrichment points into caches
// whose values never change) so the hot path can reuse one value per record
// without allocating.
package event

import (
	"net/netip"
	"time"
)

// Op is what happened to the object.
type Op uint8

const (
	OpUnknown Op = iota
	OpAdd
	OpReplace
	OpDelete
	// OpFlush is a bulk removal the kernel reported only as a count.
	OpFlush
)

var opNames = [...]string{"unknown", "add", "replace", "delete", "flush"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "unknown"
}

// ParseOp is the inverse of Op.String, for filters.
func ParseOp(s string) (Op, bool) { return parseName(opNames[:], s, OpUnknown) }

// Object is the kind of routing state changed.
type Object uint8

const (
	ObjectUnknown Object = iota
	ObjectRoute
	ObjectRule
	ObjectNexthop
	// ObjectAddr and ObjectLink appear only as the cause of a
	// kernel-internal change, never as a reported change.
	ObjectAddr
	ObjectLink
)

var objectNames = [...]string{"unknown", "route", "rule", "nexthop", "address", "link"}

func (o Object) String() string {
	if int(o) < len(objectNames) {
		return objectNames[o]
	}
	return "unknown"
}

// ParseObject is the inverse of Object.String, for filters.
func ParseObject(s string) (Object, bool) { return parseName(objectNames[:], s, ObjectUnknown) }

// Origin says what made the kernel change its state.
type Origin uint8

const (
	OriginUnknown Origin = iota
	OriginNetlink
	OriginIoctl
	// OriginKernel: the kernel removed it by itself (link down, address
	// removal, nexthop removal, IPv6 GC), see Event.Path and Event.Cause.
	OriginKernel
)

var originNames = [...]string{"unknown", "netlink", "ioctl", "kernel"}

func (o Origin) String() string {
	if int(o) < len(originNames) {
		return originNames[o]
	}
	return "unknown"
}

// Attach is the tier that observed the change.
type Attach uint8

const (
	AttachUnknown Attach = iota
	AttachFentry
	AttachKprobe
	AttachTracepoint
)

var attachNames = [...]string{"unknown", "fentry", "kprobe", "tracepoint"}

func (a Attach) String() string {
	if int(a) < len(attachNames) {
		return attachNames[a]
	}
	return "unknown"
}

// ParseAttach is the inverse of Attach.String.
func ParseAttach(s string) (Attach, bool) { return parseName(attachNames[:], s, AttachUnknown) }

// Path is the kernel code path that drove a kernel-internal change.
type Path uint16

const (
	PathNone Path = iota
	PathFibTableFlush
	PathFibNetdevEvent
	PathFibInetaddrEvent
	PathFib6RunGC
	PathAddrconfNotify
	PathRemoveNexthop
	PathIPRtIoctl
	PathIPv6RouteIoctl
	// PathNotification: seen only as an rtnetlink notification with no
	// requester (tier 3 cannot see which kernel function sent it).
	PathNotification Path = 255
)

var pathNames = [...]string{"", "fib_table_flush", "fib_netdev_event", "fib_inetaddr_event", "fib6_run_gc",
	"addrconf_notify", "remove_nexthop", "ip_rt_ioctl", "ipv6_route_ioctl"}

func (p Path) String() string {
	if p == PathNotification {
		return "notification"
	}
	if int(p) < len(pathNames) {
		return pathNames[p]
	}
	return "unknown"
}

// Family values are the kernel's address families.
const (
	FamilyInet  = 2
	FamilyInet6 = 10
)

// FamilyName returns "inet", "inet6" or "" for others.
func FamilyName(f uint8) string {
	switch f {
	case FamilyInet:
		return "inet"
	case FamilyInet6:
		return "inet6"
	}
	return ""
}

// Name is a NUL-padded kernel name (comm, interface name).
type Name [16]byte

// String returns the name up to its first NUL.
func (n *Name) String() string {
	for i, c := range n {
		if c == 0 {
			return string(n[:i])
		}
	}
	return string(n[:])
}

// Bytes returns the name up to its first NUL, without allocating.
func (n *Name) Bytes() []byte {
	for i, c := range n {
		if c == 0 {
			return n[:i]
		}
	}
	return n[:]
}

// Set stores s, truncated to 15 bytes as the kernel does.
func (n *Name) Set(s string) {
	*n = Name{}
	copy(n[:15], s)
}

// Actor is the task that made a change, as the kernel saw it at that moment.
type Actor struct {
	Pid      uint32 // thread id
	Tgid     uint32 // process id
	PPid     uint32
	UID      uint32
	CgroupID uint64
	Netns    uint32 // the actor's own network namespace inode
	Comm     Name
	PComm    Name
	// Kernel is set when no task is responsible (timers, kernel threads,
	// notifications without a requester).
	Kernel bool
	// Cookie names the kernel's record of the process (its command line,
	// executable and cgroup at the time), sent once before its first
	// change: 0 when there is none.
	Cookie uint64
	// Process is the enricher's answer for Cookie; nil until enriched.
	Process *Process
}

// Unknown reports that no task is known for a change that a task made: a
// request the tracer did not capture. Its zero fields are not values (pid
// 0 is no process, uid 0 would read as root), so sinks show it as unknown.
func (a *Actor) Unknown() bool { return !a.Kernel && a.Tgid == 0 }

// Cause is the request that made the kernel remove state by itself, e.g. an
// address deletion whose dependent routes the kernel flushed.
type Cause struct {
	Valid   bool
	Object  Object // ObjectAddr, ObjectLink or ObjectNexthop
	Op      Op
	Ifindex uint32
	Prefix  netip.Prefix // the deleted address, when Object is ObjectAddr
	Actor   Actor
}

// Event is one change to the kernel's routing state, or one failed attempt.
type Event struct {
	Time   time.Time
	Op     Op
	Object Object
	Family uint8
	Origin Origin
	Attach Attach
	Path   Path

	// Routes (and the selectors of rules).
	Dst       netip.Prefix
	Src       netip.Prefix
	Gateway   netip.Addr
	Table     uint32
	Protocol  uint8
	Scope     uint8
	Type      uint8
	TOS       uint8
	Priority  uint32 // route metric or rule priority
	Oif       uint32
	Dev       Name // name of Oif when known
	NexthopID uint32
	Multipath bool

	// Rules.
	IifName Name
	OifName Name
	FwMark  uint32
	FwMask  uint32
	Action  uint8
	Goto    uint32

	// Errno is 0 on success, else the positive errno the kernel returned.
	Errno int32
	// Count is the number of routes a flush removed (OpFlush).
	Count uint32
	// Netns is the inode of the network namespace the change applies to.
	Netns uint32
	// Portid and Seq identify the netlink request (0 for ioctl and kernel).
	Portid uint32
	Seq    uint32

	Actor Actor
	Cause Cause
	// Victim is filled by the enricher.
	Victim Victim
	// Enforcement is set when a policy looked at the change.
	Enforcement Enforcement
}

func parseName[T ~uint8](names []string, s string, zero T) (T, bool) {
	for i, n := range names {
		if i > 0 && n == s {
			return T(i), true
		}
	}
	return zero, false
}
