package tracer

import (
	"errors"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/routetrace/routetrace/event"
)

// record is the ring buffer record, laid out by the C struct rt_event
// (bpf2go generates it from the object's BTF).
type record = fibRtEvent

const recordSize = int(unsafe.Sizeof(record{}))

// Record kinds and flags, as in bpf/include/routetrace.h.
const (
	kindChange  = 1
	kindRequest = 2
	kindAck     = 3
	kindOrigin  = 4
	// kindRingFlushed never comes from the kernel: readRing sends it once
	// every record written before a Flush of the reader has been read.
	kindRingFlushed = 0xff

	flagKthread   = 1 << 0
	flagTruncated = 1 << 1
	flagLinkDown  = 1 << 2
	flagInSoftirq = 1 << 3
	flagMultipath = 1 << 4
)

var errShortRecord = errors.New("ring buffer record shorter than rt_event")

// readRecord copies a raw sample into r: a copy, not a cast, because the
// sample's alignment is the ring buffer's, not Go's.
func readRecord(raw []byte, r *record) error {
	if len(raw) < recordSize {
		return errShortRecord
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(r)), recordSize), raw)
	return nil
}

// clock turns the kernel's monotonic timestamps into wall time.
type clock struct {
	wall time.Time
	mono int64
}

func newClock() clock {
	return clock{wall: time.Now(), mono: monoNow()}
}

func (c clock) at(ktimeNs uint64) time.Time {
	return c.wall.Add(time.Duration(int64(ktimeNs) - c.mono))
}

// monoNow is the monotonic clock in the kernel's units (bpf_ktime_get_ns).
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func addr(family uint8, b *[16]uint8) netip.Addr {
	switch family {
	case event.FamilyInet:
		return netip.AddrFrom4([4]byte(b[:4]))
	case event.FamilyInet6:
		return netip.AddrFrom16(*b)
	}
	return netip.Addr{}
}

func prefix(family uint8, b *[16]uint8, bits uint8) netip.Prefix {
	a := addr(family, b)
	if !a.IsValid() || int(bits) > a.BitLen() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, int(bits))
}

func copyName(dst *event.Name, src *[16]int8) {
	for i, c := range src {
		dst[i] = byte(c)
	}
	dst[15] = 0
}

// decodeRecord fills ev from r. It allocates nothing.
func decodeRecord(c *clock, r *record, ev *event.Event) {
	*ev = event.Event{
		Time:      c.at(r.TsNs),
		Op:        event.Op(r.Op),
		Object:    event.Object(r.Object),
		Family:    r.Family,
		Origin:    event.Origin(r.Origin),
		Attach:    event.Attach(r.Attach),
		Path:      event.Path(r.Path),
		Table:     r.Table,
		Protocol:  r.Protocol,
		Scope:     r.Scope,
		Type:      r.Type,
		TOS:       r.Tos,
		Priority:  r.Priority,
		Oif:       r.Oif,
		NexthopID: r.NhId,
		Multipath: r.Flags&flagMultipath != 0,
		FwMark:    r.Fwmark,
		FwMask:    r.Fwmask,
		Action:    r.RuleAction,
		Goto:      r.GotoTarget,
		Count:     r.Count,
		Netns:     r.Netns,
		Portid:    r.Portid,
		Seq:       r.Seq,
	}
	if r.Err < 0 {
		ev.Errno = -r.Err
	}
	switch ev.Object {
	case event.ObjectRoute, event.ObjectAddr:
		ev.Dst = prefix(r.Family, &r.Dst, r.DstLen)
		if r.SrcLen > 0 {
			ev.Src = prefix(r.Family, &r.Src, r.SrcLen)
		}
	case event.ObjectRule:
		// A rule without a selector matches all: leave the prefix unset.
		if r.DstLen > 0 {
			ev.Dst = prefix(r.Family, &r.Dst, r.DstLen)
		}
		if r.SrcLen > 0 {
			ev.Src = prefix(r.Family, &r.Src, r.SrcLen)
		}
		copyName(&ev.IifName, &r.Iifname)
		copyName(&ev.OifName, &r.Oifname)
	case event.ObjectLink:
		copyName(&ev.Dev, &r.Oifname)
	}
	if ev.Op == event.OpFlush {
		ev.Dst = netip.Prefix{} // a count, not a route
	}
	if r.GwFamily != 0 {
		ev.Gateway = addr(r.GwFamily, &r.Gw)
	}
	if ev.Origin == event.OriginIoctl {
		copyName(&ev.Dev, &r.Oifname)
	}
	if ev.Object == event.ObjectRoute && r.OifName[0] != 0 {
		// tiers 1-2: the name the kernel had for the route's device
		copyName(&ev.Dev, &r.OifName)
	}

	a := &ev.Actor
	a.Pid, a.Tgid, a.PPid, a.UID = r.Pid, r.Tgid, r.Ppid, r.Uid
	a.CgroupID, a.Netns = r.CgroupId, r.ActorNetns
	a.Cookie = r.ProcCookie
	copyName(&a.Comm, &r.Comm)
	copyName(&a.PComm, &r.Pcomm)

	if ev.Origin != event.OriginKernel {
		return
	}
	// A kernel-internal change: in a timer or kernel thread nobody is
	// responsible; in a task, the task's request made the kernel do it.
	if r.Flags&(flagKthread|flagInSoftirq) != 0 {
		ev.Actor = event.Actor{Kernel: true}
		// A kernel thread acting on its own (an address whose lifetime
		// ended, a namespace torn down): the cause is known, its actor
		// is the kernel.
		if r.Flags&flagKthread != 0 && causeObject(ev.Path) != event.ObjectUnknown {
			ev.Cause = contextCause(r, ev)
		}
		return
	}
	ev.Cause = contextCause(r, ev)
	ev.Actor = event.Actor{Kernel: true}
}

// contextCause is the cause a context hook recorded: its object from the
// path, and the link, address and op the notifier was told.
func contextCause(r *record, ev *event.Event) event.Cause {
	c := event.Cause{Valid: true, Object: causeObject(ev.Path), Op: event.OpDelete, Ifindex: r.CauseIfindex, Actor: ev.Actor}
	if r.CauseOp != 0 {
		c.Op = event.Op(r.CauseOp)
	} else if c.Object == event.ObjectLink {
		c.Op = event.OpReplace // a link going down (or away: not told)
	}
	if c.Object == event.ObjectAddr && r.CauseAddr != [4]uint8{} {
		c.Prefix = netip.PrefixFrom(netip.AddrFrom4(r.CauseAddr), int(r.CausePrefixlen))
	}
	if c.Object == event.ObjectNexthop {
		c.Ifindex = 0
	}
	return c
}

func causeObject(p event.Path) event.Object {
	switch p {
	case event.PathFibNetdevEvent, event.PathAddrconfNotify:
		return event.ObjectLink
	case event.PathFibInetaddrEvent:
		return event.ObjectAddr
	case event.PathRemoveNexthop:
		return event.ObjectNexthop
	}
	return event.ObjectUnknown
}

// Decoder turns raw rt_event records into events, for readers of rings
// other than the tracer's that write the same layout (the enforcer's
// verdicts: an rt_event followed by fields of their own).
type Decoder struct{ c clock }

// NewDecoder returns a Decoder whose wall clock is taken now.
func NewDecoder() *Decoder { return &Decoder{c: newClock()} }

// RecordSize is the size of an rt_event record.
const RecordSize = recordSize

// Decode decodes the rt_event at the start of raw into ev.
func (d *Decoder) Decode(raw []byte, ev *event.Event) error {
	var r record
	if err := readRecord(raw, &r); err != nil {
		return err
	}
	decodeRecord(&d.c, &r, ev)
	return nil
}
