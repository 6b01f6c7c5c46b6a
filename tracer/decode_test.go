package tracer

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/routetrace/routetrace/event"
)

// Values of enum rt_origin, rt_attach and rt_path (bpf/include/routetrace.h).
const (
	originNetlink = 1
	originIoctl   = 2
	originKernel  = 3
	attachFentry  = 1
	attachTP      = 3
	pathFlush     = 1
	pathNetdev    = 2
	pathInetaddr  = 3
)

var decodeEpoch = time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC)

// decodeClock puts kernel time 1s at decodeEpoch.
func decodeClock() *clock { return &clock{wall: decodeEpoch, mono: int64(time.Second)} }

func evName(s string) (n event.Name) {
	n.Set(s)
	return n
}

// ipActor is the record's actor fields for `ip` run from bash, and the
// event.Actor they decode to.
func ipActor(r *record) event.Actor {
	r.Pid, r.Tgid, r.Ppid, r.Uid = 4321, 4321, 1000, 0
	r.CgroupId, r.ActorNetns = 7777, 4026531840
	r.Comm, r.Pcomm = n16("ip"), n16("bash")
	return event.Actor{Pid: 4321, Tgid: 4321, PPid: 1000, UID: 0, CgroupID: 7777, Netns: 4026531840,
		Comm: evName("ip"), PComm: evName("bash")}
}

type decodeCase struct {
	name string
	rec  record
	want event.Event
}

func decodeCases() []decodeCase {
	var cases []decodeCase

	{
		r := record{TsNs: uint64(time.Second + 1500*time.Millisecond), Kind: kindChange, Op: 3, Object: 1,
			Family: 2, Origin: originNetlink, Attach: attachTP, DstLen: 24, Dst: a16("10.1.2.0"),
			Table: 254, Protocol: 4, Type: 1, Oif: 2, Err: -3, Netns: 4026532000, Portid: 99, Seq: 17,
			NlmsgType: 25, NlmsgFlags: 5}
		actor := ipActor(&r)
		cases = append(cases, decodeCase{"ipv4 route delete by ip, ESRCH", r, event.Event{
			Time: decodeEpoch.Add(1500 * time.Millisecond), Op: event.OpDelete, Object: event.ObjectRoute,
			Family: 2, Origin: event.OriginNetlink, Attach: event.AttachTracepoint,
			Dst: netip.MustParsePrefix("10.1.2.0/24"), Table: 254, Protocol: 4, Type: 1, Oif: 2,
			Errno: 3, Netns: 4026532000, Portid: 99, Seq: 17, Actor: actor}})
	}
	{
		r := record{TsNs: uint64(2 * time.Second), Kind: kindChange, Op: 2, Object: 1, Family: 10,
			Origin: originNetlink, Attach: attachFentry, DstLen: 48, Dst: a16("2001:db8:1::"),
			SrcLen: 64, Src: a16("2001:db8:5::"), Gw: a16("fe80::1"), GwFamily: 10, Table: 1000,
			Protocol: 3, Scope: 0, Type: 1, Tos: 0, Priority: 1024, Oif: 3, NhId: 0,
			Flags: flagMultipath, Netns: 4026532000, Seq: 18}
		actor := ipActor(&r)
		cases = append(cases, decodeCase{"ipv6 multipath route replace", r, event.Event{
			Time: decodeEpoch.Add(time.Second), Op: event.OpReplace, Object: event.ObjectRoute, Family: 10,
			Origin: event.OriginNetlink, Attach: event.AttachFentry,
			Dst: netip.MustParsePrefix("2001:db8:1::/48"), Src: netip.MustParsePrefix("2001:db8:5::/64"),
			Gateway: netip.MustParseAddr("fe80::1"), Table: 1000, Protocol: 3, Type: 1, Priority: 1024, Oif: 3,
			Multipath: true, Netns: 4026532000, Seq: 18, Actor: actor}})
	}
	{
		r := record{TsNs: uint64(time.Second), Kind: kindChange, Op: 1, Object: 2, Family: 2,
			Origin: originNetlink, Attach: attachTP, SrcLen: 32, Src: a16("10.244.1.5"),
			Table: 1000, Priority: 1000, Fwmark: 0x100, Fwmask: 0xff00, RuleAction: 1, Protocol: 4,
			Iifname: n16("eth0"), Oifname: n16("vrf-blue"), Netns: 4026532000, Seq: 19}
		actor := ipActor(&r)
		cases = append(cases, decodeCase{"rule from 10.244.1.5/32, no dst", r, event.Event{
			Time: decodeEpoch, Op: event.OpAdd, Object: event.ObjectRule, Family: 2,
			Origin: event.OriginNetlink, Attach: event.AttachTracepoint,
			Src: netip.MustParsePrefix("10.244.1.5/32"), Table: 1000, Priority: 1000, Protocol: 4,
			FwMark: 0x100, FwMask: 0xff00, Action: 1, IifName: evName("eth0"), OifName: evName("vrf-blue"),
			Netns: 4026532000, Seq: 19, Actor: actor}})
	}
	{
		// A flush from a kernel worker: nobody to blame.
		r := record{TsNs: uint64(3 * time.Second), Kind: kindChange, Op: 4, Object: 1, Family: 2,
			Origin: originKernel, Attach: attachTP, Path: pathFlush, Table: 254, Count: 1000, Reserved: 3,
			Flags: flagKthread, Pid: 42, Tgid: 42, Ppid: 2, Comm: n16("kworker/0:1"), Pcomm: n16("kthreadd"),
			Netns: 4026532000}
		cases = append(cases, decodeCase{"kernel flush from a kthread", r, event.Event{
			Time: decodeEpoch.Add(2 * time.Second), Op: event.OpFlush, Object: event.ObjectRoute, Family: 2,
			Origin: event.OriginKernel, Attach: event.AttachTracepoint, Path: event.PathFibTableFlush,
			Table: 254, Count: 1000, Netns: 4026532000, Actor: event.Actor{Kernel: true}}})
	}
	{
		// `ip addr del` made the kernel drop the address's routes: the
		// task is the cause, the kernel the actor.
		r := record{TsNs: uint64(time.Second), Kind: kindChange, Op: 3, Object: 1, Family: 2,
			Origin: originKernel, Attach: attachTP, Path: pathInetaddr, DstLen: 24, Dst: a16("10.0.0.0"),
			Table: 254, Protocol: 2, Scope: 253, Type: 1, Oif: 2, Netns: 4026532000}
		actor := ipActor(&r)
		cases = append(cases, decodeCase{"kernel removal caused by an address deletion", r, event.Event{
			Time: decodeEpoch, Op: event.OpDelete, Object: event.ObjectRoute, Family: 2,
			Origin: event.OriginKernel, Attach: event.AttachTracepoint, Path: event.PathFibInetaddrEvent,
			Dst: netip.MustParsePrefix("10.0.0.0/24"), Table: 254, Protocol: 2, Scope: 253, Type: 1, Oif: 2,
			Netns: 4026532000, Actor: event.Actor{Kernel: true},
			Cause: event.Cause{Valid: true, Object: event.ObjectAddr, Op: event.OpDelete, Actor: actor}}})
	}
	{
		r := record{TsNs: uint64(time.Second), Kind: kindChange, Op: 3, Object: 1, Family: 10,
			Origin: originKernel, Attach: attachTP, Path: pathNetdev, DstLen: 64, Dst: a16("2001:db8::"),
			Table: 254, Oif: 3, Netns: 4026532000}
		actor := ipActor(&r)
		cases = append(cases, decodeCase{"kernel removal caused by a link going down", r, event.Event{
			Time: decodeEpoch, Op: event.OpDelete, Object: event.ObjectRoute, Family: 10,
			Origin: event.OriginKernel, Attach: event.AttachTracepoint, Path: event.PathFibNetdevEvent,
			Dst: netip.MustParsePrefix("2001:db8::/64"), Table: 254, Oif: 3, Netns: 4026532000,
			Actor: event.Actor{Kernel: true},
			Cause: event.Cause{Valid: true, Object: event.ObjectLink, Op: event.OpReplace, Actor: actor}}})
	}
	{
		// Tiers 1-2: the notifier told the context hook which address
		// went, and the link that was unregistered.
		r := record{TsNs: uint64(time.Second), Kind: kindChange, Op: 3, Object: 1, Family: 2,
			Origin: originKernel, Attach: attachTP, Path: pathInetaddr, DstLen: 24, Dst: a16("10.0.0.0"),
			Table: 254, Oif: 2, Netns: 4026532000, CauseIfindex: 2, CauseAddr: [4]uint8{10, 0, 0, 1},
			CausePrefixlen: 24, CauseOp: 3}
		actor := ipActor(&r)
		cases = append(cases, decodeCase{"kernel removal with the address the notifier was told", r, event.Event{
			Time: decodeEpoch, Op: event.OpDelete, Object: event.ObjectRoute, Family: 2,
			Origin: event.OriginKernel, Attach: event.AttachTracepoint, Path: event.PathFibInetaddrEvent,
			Dst: netip.MustParsePrefix("10.0.0.0/24"), Table: 254, Oif: 2, Netns: 4026532000, Actor: event.Actor{Kernel: true},
			Cause: event.Cause{Valid: true, Object: event.ObjectAddr, Op: event.OpDelete, Ifindex: 2,
				Prefix: netip.MustParsePrefix("10.0.0.1/24"), Actor: actor}}})
		r2 := record{TsNs: uint64(time.Second), Kind: kindChange, Op: 3, Object: 1, Family: 10,
			Origin: originKernel, Attach: attachTP, Path: pathNetdev, DstLen: 64, Dst: a16("2001:db8::"),
			Table: 254, Oif: 3, Netns: 4026532000, CauseIfindex: 3, CauseOp: 3}
		actor2 := ipActor(&r2)
		cases = append(cases, decodeCase{"kernel removal caused by a link unregistered", r2, event.Event{
			Time: decodeEpoch, Op: event.OpDelete, Object: event.ObjectRoute, Family: 10,
			Origin: event.OriginKernel, Attach: event.AttachTracepoint, Path: event.PathFibNetdevEvent,
			Dst: netip.MustParsePrefix("2001:db8::/64"), Table: 254, Oif: 3, Netns: 4026532000,
			Actor: event.Actor{Kernel: true},
			Cause: event.Cause{Valid: true, Object: event.ObjectLink, Op: event.OpDelete, Ifindex: 3, Actor: actor2}}})
	}
	{
		// IPv6 GC runs from a timer: the interrupted task is not the actor.
		r := record{TsNs: uint64(time.Second), Kind: kindChange, Op: 3, Object: 1, Family: 10,
			Origin: originKernel, Attach: attachTP, Path: 4, DstLen: 128, Dst: a16("2001:db8::9"),
			Table: 254, Flags: flagInSoftirq}
		ipActor(&r)
		cases = append(cases, decodeCase{"kernel removal in softirq", r, event.Event{
			Time: decodeEpoch, Op: event.OpDelete, Object: event.ObjectRoute, Family: 10,
			Origin: event.OriginKernel, Attach: event.AttachTracepoint, Path: event.PathFib6RunGC,
			Dst: netip.MustParsePrefix("2001:db8::9/128"), Table: 254, Actor: event.Actor{Kernel: true}}})
	}
	{
		r := record{TsNs: uint64(time.Second), Kind: kindRequest, Op: 1, Object: 1, Family: 2,
			Origin: originIoctl, Attach: attachTP, Path: 7, DstLen: 32, Dst: a16("10.3.3.3"),
			Gw: a16("10.0.0.1"), GwFamily: 2, Oifname: n16("eth0")}
		actor := ipActor(&r)
		r.Comm = n16("route")
		actor.Comm = evName("route")
		cases = append(cases, decodeCase{"ioctl route add with a device", r, event.Event{
			Time: decodeEpoch, Op: event.OpAdd, Object: event.ObjectRoute, Family: 2,
			Origin: event.OriginIoctl, Attach: event.AttachTracepoint, Path: event.PathIPRtIoctl,
			Dst: netip.MustParsePrefix("10.3.3.3/32"), Gateway: netip.MustParseAddr("10.0.0.1"),
			Dev: evName("eth0"), Actor: actor}})
	}
	{
		// A truncated request with no object: nothing to decode but the actor.
		r := record{TsNs: uint64(time.Second), Kind: kindRequest, Origin: originNetlink, Attach: attachTP,
			Flags: flagTruncated, Portid: 77}
		actor := ipActor(&r)
		cases = append(cases, decodeCase{"request record without an object", r, event.Event{
			Time: decodeEpoch, Origin: event.OriginNetlink, Attach: event.AttachTracepoint, Portid: 77,
			Actor: actor}})
	}
	{
		r := record{TsNs: uint64(time.Second), Kind: kindChange, Op: 1, Object: 5, Family: 0,
			Origin: originNetlink, Attach: attachTP, Oif: 3, Oifname: n16("eth1"), Flags: flagLinkDown}
		actor := ipActor(&r)
		cases = append(cases, decodeCase{"link", r, event.Event{
			Time: decodeEpoch, Op: event.OpAdd, Object: event.ObjectLink, Origin: event.OriginNetlink,
			Attach: event.AttachTracepoint, Oif: 3, Dev: evName("eth1"), Actor: actor}})
	}
	return cases
}

func recordBytes(r *record) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(r)), recordSize)
}

func TestDecodeRecord(t *testing.T) {
	c := decodeClock()
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			// Through the bytes, as the ring buffer delivers them.
			raw := append([]byte{0xff}, recordBytes(&tc.rec)...)[1:] // unaligned
			var r record
			if err := readRecord(raw, &r); err != nil {
				t.Fatal(err)
			}
			var ev event.Event
			decodeRecord(c, &r, &ev)
			if !ev.Time.Equal(tc.want.Time) {
				t.Errorf("Time = %v, want %v", ev.Time, tc.want.Time)
			}
			ev.Time, tc.want.Time = time.Time{}, time.Time{}
			if ev != tc.want {
				t.Errorf("decoded:%s", eventDiff(ev, tc.want))
			}
		})
	}

	var r record
	if err := readRecord(make([]byte, recordSize-1), &r); err == nil {
		t.Errorf("readRecord accepted %d bytes, want at least %d", recordSize-1, recordSize)
	}
}

func TestDecodeRecordAllocs(t *testing.T) {
	c := decodeClock()
	cases := decodeCases()
	raws := make([][]byte, len(cases))
	for i := range cases {
		raws[i] = recordBytes(&cases[i].rec)
	}
	var r record
	var ev event.Event
	for i, raw := range raws {
		allocs := testing.AllocsPerRun(100, func() {
			if err := readRecord(raw, &r); err != nil {
				t.Fatal(err)
			}
			decodeRecord(c, &r, &ev)
		})
		if allocs != 0 {
			t.Errorf("%s: readRecord+decodeRecord allocate %v times, want 0", cases[i].name, allocs)
		}
	}
}

// FuzzDecodeRecord decodes arbitrary ring buffer samples: never a panic,
// and never an address of another family than the record says.
func FuzzDecodeRecord(f *testing.F) {
	for _, tc := range decodeCases() {
		f.Add(recordBytes(&tc.rec))
	}
	f.Add([]byte{})
	f.Add(make([]byte, recordSize-1))
	f.Add(procBytes(procSample()))
	f.Add(procBytes(procSample())[:procSize-1])
	c := decodeClock()
	f.Fuzz(func(t *testing.T, raw []byte) {
		if recordKind(raw) == kindProc {
			// What readRing does with a PROC record.
			p, err := decodeProcess(c, raw)
			if err != nil {
				if len(raw) >= procSize {
					t.Fatalf("decodeProcess(%d bytes): %v", len(raw), err)
				}
				return
			}
			if len(raw) < procSize {
				t.Fatalf("decodeProcess accepted %d bytes", len(raw))
			}
			n := 0
			for _, a := range p.Argv {
				n += len(a) + 1
			}
			if n > 1024+1 || len(p.Exe) > 256 || len(p.Cgroup) > 512 {
				t.Fatalf("process strings past their arrays: argv %d, exe %d, cgroup %d bytes", n, len(p.Exe), len(p.Cgroup))
			}
			if p.Truncated&^(TruncatedArgv|TruncatedExe|TruncatedCgroup) != 0 {
				t.Fatalf("unknown truncation bits %b", p.Truncated)
			}
			return
		}
		var r record
		if err := readRecord(raw, &r); err != nil {
			if len(raw) >= recordSize {
				t.Fatalf("readRecord(%d bytes): %v", len(raw), err)
			}
			return
		}
		if len(raw) < recordSize {
			t.Fatalf("readRecord accepted %d bytes", len(raw))
		}
		var ev event.Event
		decodeRecord(c, &r, &ev)

		ofFamily := func(what string, a netip.Addr, family uint8) {
			switch {
			case !a.IsValid():
			case family == event.FamilyInet && a.Is4():
			case family == event.FamilyInet6 && a.Is6():
			default:
				t.Fatalf("%s %v from a record of family %d", what, a, family)
			}
		}
		ofFamily("Dst", ev.Dst.Addr(), r.Family)
		ofFamily("Src", ev.Src.Addr(), r.Family)
		// The gateway's family is its own: an IPv4 route may go via IPv6.
		ofFamily("Gateway", ev.Gateway, r.GwFamily)
		if ev.Dst.IsValid() && ev.Dst.Bits() != int(r.DstLen) {
			t.Fatalf("Dst %v from dst_len %d", ev.Dst, r.DstLen)
		}
		if ev.Src.IsValid() && ev.Src.Bits() != int(r.SrcLen) {
			t.Fatalf("Src %v from src_len %d", ev.Src, r.SrcLen)
		}
		if ev.Origin == event.OriginKernel && (!ev.Actor.Kernel || ev.Actor != (event.Actor{Kernel: true})) {
			t.Fatalf("kernel-origin event with actor %+v", ev.Actor)
		}
		if ev.Cause.Valid && ev.Origin != event.OriginKernel {
			t.Fatalf("cause on a %v event", ev.Origin)
		}
	})
}

func procSample() *procRecord {
	r := &procRecord{Kind: kindProc, Cookie: 7<<16 | 1, Pid: 10, Tgid: 10, Ppid: 1, CgroupId: 99, Cgroup2Id: 99,
		Flags: procFlagCgroup2 | 1<<3, CgroupLevel: 2}
	put := func(dst []int8, s string) uint16 {
		for i := range len(s) {
			dst[i] = int8(s[i])
		}
		return uint16(len(s))
	}
	r.ArgvLen = put(r.Argv[:], "ip\x00route\x00del\x0010.0.0.0/8\x00")
	r.ExeLen = put(r.Exe[:], "/usr/bin/ip")
	r.CgroupLen = put(r.Cgroup[:], "/system.slice/x.service")
	return r
}

func procBytes(r *procRecord) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(r)), procSize)...)
}

// TestDecodeProcess: a PROC record's fields, strings and flags.
func TestDecodeProcess(t *testing.T) {
	raw := procBytes(procSample())
	if k := recordKind(raw); k != kindProc {
		t.Fatalf("kind %d", k)
	}
	p, err := decodeProcess(decodeClock(), raw)
	if err != nil {
		t.Fatal(err)
	}
	want := Process{Cookie: 7<<16 | 1, Time: p.Time, Pid: 10, Tgid: 10, PPid: 1, CgroupID: 99, Cgroup2ID: 99, Cgroup2: true,
		CgroupLevel: 2, Cgroup: "/system.slice/x.service", Exe: "/usr/bin/ip",
		Argv: []string{"ip", "route", "del", "10.0.0.0/8"}, Truncated: TruncatedCgroup}
	if !reflect.DeepEqual(*p, want) {
		t.Errorf("got  %+v\nwant %+v", *p, want)
	}
	if _, err := decodeProcess(decodeClock(), raw[:procSize-1]); err == nil {
		t.Error("a short PROC record was decoded")
	}
	// A cut argv has no final NUL: the last argument is kept as cut.
	r := procSample()
	r.ArgvLen = 8 // "ip\0route"
	p, _ = decodeProcess(decodeClock(), procBytes(r))
	if !slices.Equal(p.Argv, []string{"ip", "route"}) {
		t.Errorf("cut argv %q", p.Argv)
	}
	r.ArgvLen = 60000 // never past the array
	p, _ = decodeProcess(decodeClock(), procBytes(r))
	if len(p.Argv) < 4 || !slices.Equal(p.Argv[:4], want.Argv) {
		t.Errorf("argv of a length past the array: %q", p.Argv)
	}
}
