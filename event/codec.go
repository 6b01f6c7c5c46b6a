package event

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// The binary form below is how the journal keeps an Event: everything the
// JSON output shows, enrichment included, so that a change read back hours
// later prints exactly as it did live. It is versioned by its first byte;
// a decoder refuses a version it does not know rather than guess. Strings
// and lists are length-prefixed with uvarints; integers are uvarints
// (most are small: tables, pids, ifindexes).

// codecVersion is the first byte of every encoded event. Add a version,
// never change what one means: journals outlive binaries.
const codecVersion = 1

// codecVersionEnforced is version 1 followed by the event's Enforcement.
// Only events a policy judged are written in it, so a journal of a node
// without a policy stays readable by binaries that know only version 1.
const codecVersionEnforced = 2

// Bounds the decoder enforces, so that a corrupt length cannot make it
// allocate without end (the journal's records are at most 1 MiB anyway).
const (
	maxCodecString = 1 << 16
	maxCodecList   = 1 << 12
)

// presence bits of the optional parts.
const (
	hasProcess   = 1 << 0
	hasContainer = 1 << 1
	hasPod       = 1 << 2
)

const (
	victimHasLink = 1 << 0
	victimHasPod  = 1 << 1
)

// AppendBinary appends ev's binary form to b.
func AppendBinary(b []byte, ev *Event) []byte { return (*Encoder)(nil).Append(b, ev) }

// Encoder is AppendBinary with a memory of the last process it encoded: a
// burst of changes by one process (a flush, a daemon's restart) encodes
// its command line, executable and cgroup once and copies them after. A
// Process is never changed once published (see Process), so its pointer
// names its bytes. The zero Encoder is ready; a nil one remembers nothing.
type Encoder struct {
	last    *Process
	lastEnc []byte
}

// Append appends ev's binary form to b.
func (e *Encoder) Append(b []byte, ev *Event) []byte {
	enforced := ev.Enforcement.Verdict != VerdictNone
	if enforced {
		b = append(b, codecVersionEnforced)
	} else {
		b = append(b, codecVersion)
	}
	b = binary.AppendVarint(b, ev.Time.UnixNano())
	b = append(b, byte(ev.Op), byte(ev.Object), ev.Family, byte(ev.Origin), byte(ev.Attach))
	b = binary.AppendUvarint(b, uint64(ev.Path))
	b = appendPrefix(b, ev.Dst)
	b = appendPrefix(b, ev.Src)
	b = appendAddr(b, ev.Gateway)
	b = binary.AppendUvarint(b, uint64(ev.Table))
	b = append(b, ev.Protocol, ev.Scope, ev.Type, ev.TOS)
	b = binary.AppendUvarint(b, uint64(ev.Priority))
	b = binary.AppendUvarint(b, uint64(ev.Oif))
	b = appendName(b, &ev.Dev)
	b = binary.AppendUvarint(b, uint64(ev.NexthopID))
	b = appendBool(b, ev.Multipath)
	b = appendName(b, &ev.IifName)
	b = appendName(b, &ev.OifName)
	b = binary.AppendUvarint(b, uint64(ev.FwMark))
	b = binary.AppendUvarint(b, uint64(ev.FwMask))
	b = append(b, ev.Action)
	b = binary.AppendUvarint(b, uint64(ev.Goto))
	b = binary.AppendVarint(b, int64(ev.Errno))
	b = binary.AppendUvarint(b, uint64(ev.Count))
	b = binary.AppendUvarint(b, uint64(ev.Netns))
	b = binary.AppendUvarint(b, uint64(ev.Portid))
	b = binary.AppendUvarint(b, uint64(ev.Seq))
	b = e.appendActor(b, &ev.Actor)

	b = appendBool(b, ev.Cause.Valid)
	if ev.Cause.Valid {
		c := &ev.Cause
		b = append(b, byte(c.Object), byte(c.Op))
		b = binary.AppendUvarint(b, uint64(c.Ifindex))
		b = appendPrefix(b, c.Prefix)
		b = e.appendActor(b, &c.Actor)
	}

	var vflags byte
	if ev.Victim.Link != nil {
		vflags |= victimHasLink
	}
	if ev.Victim.Pod != nil {
		vflags |= victimHasPod
	}
	b = append(b, vflags)
	if l := ev.Victim.Link; l != nil {
		b = appendStrings(b, l.Name, l.Kind, l.Master, l.CNI)
	}
	if p := ev.Victim.Pod; p != nil {
		b = appendPod(b, p)
	}
	b = binary.AppendUvarint(b, uint64(ev.Victim.Pods))
	if enforced {
		f := &ev.Enforcement
		b = append(b, byte(f.Verdict))
		b = appendStrings(b, f.Rule, f.Reason)
		b = binary.AppendVarint(b, int64(f.Missing))
	}
	return b
}

func (e *Encoder) appendActor(b []byte, a *Actor) []byte {
	for _, v := range [...]uint32{a.Pid, a.Tgid, a.PPid, a.UID, a.Netns} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	b = binary.AppendUvarint(b, a.CgroupID)
	b = binary.AppendUvarint(b, a.Cookie)
	b = appendName(b, &a.Comm)
	b = appendName(b, &a.PComm)
	b = appendBool(b, a.Kernel)
	p := a.Process
	if p == nil {
		return append(b, 0)
	}
	if e == nil {
		return appendProcess(b, p)
	}
	if e.last != p {
		e.lastEnc = appendProcess(e.lastEnc[:0], p)
		e.last = p
	}
	return append(b, e.lastEnc...)
}

// appendProcess appends a process's presence flags and fields.
func appendProcess(b []byte, p *Process) []byte {
	flags := byte(hasProcess)
	if p.Container != nil {
		flags |= hasContainer
		if p.Container.Pod != nil {
			flags |= hasPod
		}
	}
	b = append(b, flags)
	b = appendStrings(b, p.Exe)
	b = binary.AppendUvarint(b, uint64(len(p.Cmdline)))
	b = appendStrings(b, p.Cmdline...)
	b = appendStrings(b, p.Cgroup, p.CgroupHierarchy, p.Unit, p.ContainerID, p.Runtime, p.PodUID, p.QoS, p.EnrichError)
	if c := p.Container; c != nil {
		b = appendStrings(b, c.ID, c.Name, c.Image)
		if c.Pod != nil {
			b = appendPod(b, c.Pod)
		}
	}
	return b
}

func appendPod(b []byte, p *Pod) []byte {
	b = appendStrings(b, p.Name, p.Namespace, p.UID)
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys) // one event, one encoding: journals compare byte for byte
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendStrings(b, k, p.Labels[k])
	}
	b = binary.AppendUvarint(b, uint64(len(p.IPs)))
	for _, ip := range p.IPs {
		b = appendAddr(b, ip)
	}
	return appendBool(b, p.HostNetwork)
}

func appendStrings(b []byte, ss ...string) []byte {
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func appendName(b []byte, n *Name) []byte {
	nb := n.Bytes()
	b = append(b, byte(len(nb)))
	return append(b, nb...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendAddr writes the address's length (0, 4 or 16) and bytes.
func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, 0)
	case a.Is4():
		v := a.As4()
		return append(append(b, 4), v[:]...)
	default:
		v := a.As16()
		return append(append(b, 16), v[:]...)
	}
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	b = appendAddr(b, p.Addr())
	if p.IsValid() {
		b = append(b, byte(p.Bits()))
	}
	return b
}

// ErrCodecVersion is returned for an encoded event of a version this
// binary does not know (a journal written by a newer routetrace).
var ErrCodecVersion = errors.New("unknown event encoding version")

// DecodeBinary decodes one event from b into ev, replacing all of it. The
// enrichment it carried is decoded into new values that ev points to. It
// fails on anything but exactly one whole event.
func DecodeBinary(b []byte, ev *Event) error {
	d := decoder{b: b}
	*ev = Event{}
	version := d.byte()
	if d.err == nil && version != codecVersion && version != codecVersionEnforced {
		return fmt.Errorf("%w: %d (this routetrace reads %d and %d)", ErrCodecVersion, version, codecVersion, codecVersionEnforced)
	}
	ev.Time = time.Unix(0, d.varint()).UTC()
	ev.Op, ev.Object, ev.Family, ev.Origin, ev.Attach = Op(d.byte()), Object(d.byte()), d.byte(), Origin(d.byte()), Attach(d.byte())
	ev.Path = Path(d.u(math.MaxUint16))
	ev.Dst = d.prefix()
	ev.Src = d.prefix()
	ev.Gateway = d.addr()
	ev.Table = d.u32()
	ev.Protocol, ev.Scope, ev.Type, ev.TOS = d.byte(), d.byte(), d.byte(), d.byte()
	ev.Priority = d.u32()
	ev.Oif = d.u32()
	d.name(&ev.Dev)
	ev.NexthopID = d.u32()
	ev.Multipath = d.bool()
	d.name(&ev.IifName)
	d.name(&ev.OifName)
	ev.FwMark = d.u32()
	ev.FwMask = d.u32()
	ev.Action = d.byte()
	ev.Goto = d.u32()
	errno := d.varint()
	if errno < math.MinInt32 || errno > math.MaxInt32 {
		d.fail("errno out of range")
	}
	ev.Errno = int32(errno)
	ev.Count = d.u32()
	ev.Netns = d.u32()
	ev.Portid = d.u32()
	ev.Seq = d.u32()
	d.actor(&ev.Actor)
	if ev.Cause.Valid = d.bool(); ev.Cause.Valid {
		c := &ev.Cause
		c.Object, c.Op = Object(d.byte()), Op(d.byte())
		c.Ifindex = d.u32()
		c.Prefix = d.prefix()
		d.actor(&c.Actor)
	}
	vflags := d.byte()
	if vflags&^(victimHasLink|victimHasPod) != 0 {
		d.fail("unknown victim flags")
	}
	if vflags&victimHasLink != 0 {
		ev.Victim.Link = &Link{Name: d.str(), Kind: d.str(), Master: d.str(), CNI: d.str()}
	}
	if vflags&victimHasPod != 0 {
		ev.Victim.Pod = d.pod()
	}
	ev.Victim.Pods = int(d.u(math.MaxInt32))
	if version == codecVersionEnforced {
		f := &ev.Enforcement
		f.Verdict = Verdict(d.byte())
		if f.Verdict == VerdictNone || int(f.Verdict) >= len(verdictNames) {
			d.fail("unknown verdict")
		}
		f.Rule, f.Reason = d.str(), d.str()
		f.Missing = time.Duration(d.varint())
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d bytes left over", len(d.b)))
	}
	if d.err != nil {
		return fmt.Errorf("decoding event: %w", d.err)
	}
	return nil
}

// decoder reads fields in order; the first failure sticks and every later
// read returns a zero value, so DecodeBinary checks once at the end.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("at byte %d: %s", d.off, what)
	}
	d.b = nil
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	d.off += n
	return v
}

func (d *decoder) byte() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.take(n)
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.take(n)
	return v
}

// u reads a uvarint no larger than limit.
func (d *decoder) u(limit uint64) uint64 {
	v := d.uvarint()
	if v > limit {
		d.fail(fmt.Sprintf("value %d above %d", v, limit))
		return 0
	}
	return v
}

func (d *decoder) u32() uint32 { return uint32(d.u(math.MaxUint32)) }

func (d *decoder) str() string {
	n := d.u(maxCodecString)
	return string(d.take(int(n)))
}

func (d *decoder) name(n *Name) {
	l := int(d.byte())
	if l > len(n)-1 {
		d.fail("name longer than 15 bytes")
		return
	}
	v := d.take(l)
	// The encoder writes a name up to its first NUL, so a NUL inside
	// one is damage; copying it would decode to a name that encodes
	// differently (the fuzzer found one).
	if bytes.IndexByte(v, 0) >= 0 {
		d.fail("name holds a NUL byte")
		return
	}
	copy(n[:], v)
}

func (d *decoder) addr() netip.Addr {
	switch d.byte() {
	case 0:
		return netip.Addr{}
	case 4:
		if v := d.take(4); v != nil {
			return netip.AddrFrom4([4]byte(v))
		}
	case 16:
		if v := d.take(16); v != nil {
			return netip.AddrFrom16([16]byte(v))
		}
	default:
		d.fail("bad address length")
	}
	return netip.Addr{}
}

func (d *decoder) prefix() netip.Prefix {
	a := d.addr()
	if !a.IsValid() {
		return netip.Prefix{}
	}
	bits := int(d.byte())
	if bits > a.BitLen() {
		d.fail("prefix length above the address's")
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, bits)
}

func (d *decoder) actor(a *Actor) {
	a.Pid, a.Tgid, a.PPid, a.UID, a.Netns = d.u32(), d.u32(), d.u32(), d.u32(), d.u32()
	a.CgroupID = d.uvarint()
	a.Cookie = d.uvarint()
	d.name(&a.Comm)
	d.name(&a.PComm)
	a.Kernel = d.bool()
	flags := d.byte()
	if flags&^(hasProcess|hasContainer|hasPod) != 0 || (flags != 0 && flags&hasProcess == 0) ||
		(flags&hasPod != 0 && flags&hasContainer == 0) {
		d.fail("bad process flags")
	}
	if flags&hasProcess == 0 || d.err != nil {
		return
	}
	p := &Process{Exe: d.str()}
	n := d.u(maxCodecList)
	if n > 0 && d.err == nil {
		p.Cmdline = make([]string, 0, min(n, uint64(len(d.b))))
		for range n {
			p.Cmdline = append(p.Cmdline, d.str())
		}
	}
	p.Cgroup, p.CgroupHierarchy, p.Unit, p.ContainerID = d.str(), d.str(), d.str(), d.str()
	p.Runtime, p.PodUID, p.QoS, p.EnrichError = d.str(), d.str(), d.str(), d.str()
	if flags&hasContainer != 0 {
		p.Container = &Container{ID: d.str(), Name: d.str(), Image: d.str()}
		if flags&hasPod != 0 {
			p.Container.Pod = d.pod()
		}
	}
	a.Process = p
}

func (d *decoder) pod() *Pod {
	p := &Pod{Name: d.str(), Namespace: d.str(), UID: d.str()}
	if n := d.u(maxCodecList); n > 0 && d.err == nil {
		p.Labels = make(map[string]string, min(n, uint64(len(d.b))))
		for range n {
			k := d.str()
			p.Labels[k] = d.str()
		}
	}
	if n := d.u(maxCodecList); n > 0 && d.err == nil {
		p.IPs = make([]netip.Addr, 0, min(n, uint64(len(d.b))))
		for range n {
			p.IPs = append(p.IPs, d.addr())
		}
	}
	p.HostNetwork = d.bool()
	return p
}
