package exporter

import (
	"net/netip"
	"time"

	"github.com/routetrace/routetrace/event"
)

// Hand-built events shared by the sink tests.

var testTime = time.Date(2024, 5, 1, 15, 4, 5, 123456789, time.UTC)

func actor(comm string, tgid, uid uint32) event.Actor {
	a := event.Actor{Pid: tgid, Tgid: tgid, PPid: 1, UID: uid, CgroupID: 7890, Netns: 4026531840}
	a.Comm.Set(comm)
	a.PComm.Set("systemd")
	return a
}

func routeDelete() *event.Event {
	ev := &event.Event{
		Time: testTime, Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet,
		Origin: event.OriginNetlink, Attach: event.AttachFentry,
		Dst: netip.MustParsePrefix("10.244.3.0/24"), Table: 254, Protocol: 12, Type: 1,
		Oif: 7, Netns: 4026531840, Portid: 812, Seq: 42,
		Actor: actor("systemd-networkd", 812, 101),
	}
	ev.Dev.Set("cali1a2b")
	return ev
}

func ruleDelete() *event.Event {
	return &event.Event{
		Time: testTime.Add(time.Millisecond), Op: event.OpDelete, Object: event.ObjectRule, Family: event.FamilyInet,
		Origin: event.OriginNetlink, Attach: event.AttachFentry,
		Src: netip.MustParsePrefix("10.244.1.5/32"), Table: 100, Priority: 512, Action: 1,
		Netns: 4026531840, Portid: 812, Seq: 43,
		Actor: actor("systemd-networkd", 812, 101),
	}
}

func failedDelete() *event.Event {
	return &event.Event{
		Time: testTime.Add(878 * time.Millisecond), Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet,
		Origin: event.OriginNetlink, Attach: event.AttachKprobe,
		Dst: netip.MustParsePrefix("10.9.9.0/24"), Table: 254, Scope: 255,
		Errno: 3, Netns: 4026531840, Portid: 4410, Seq: 1,
		Actor: actor("ip", 4410, 0),
	}
}

func kernelDelete() *event.Event {
	ev := &event.Event{
		Time: testTime, Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet6,
		Origin: event.OriginKernel, Attach: event.AttachFentry, Path: event.PathFibInetaddrEvent,
		Dst: netip.MustParsePrefix("2001:db8::/64"), Gateway: netip.MustParseAddr("fe80::1"),
		Table: 254, Protocol: 2, Scope: 253, Type: 1, Priority: 256, Oif: 3, Netns: 4026531840,
		Actor: event.Actor{Kernel: true},
		Cause: event.Cause{Valid: true, Object: event.ObjectAddr, Op: event.OpDelete, Ifindex: 3,
			Prefix: netip.MustParsePrefix("192.0.2.1/24"), Actor: actor("ip", 4410, 0)},
	}
	ev.Dev.Set("eth0")
	return ev
}

func flushRecord() *event.Event {
	return &event.Event{
		Time: testTime, Op: event.OpFlush, Object: event.ObjectRoute, Family: event.FamilyInet,
		Origin: event.OriginKernel, Attach: event.AttachFentry, Path: event.PathFibTableFlush,
		Table: 254, Count: 1000, Netns: 4026531840,
		Actor: event.Actor{Kernel: true},
	}
}

func linkDownDelete() *event.Event {
	ev := &event.Event{
		Time: testTime, Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet,
		Origin: event.OriginKernel, Attach: event.AttachKprobe, Path: event.PathFibNetdevEvent,
		Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.254"),
		Table: 254, Protocol: 16, Type: 1, Priority: 100, Oif: 3, Netns: 4026531840,
		Actor: event.Actor{Kernel: true},
		Cause: event.Cause{Valid: true, Object: event.ObjectLink, Op: event.OpReplace, Ifindex: 3,
			Actor: actor("systemd-networkd", 812, 101)},
	}
	ev.Dev.Set("eth0")
	return ev
}

func nexthopAdd() *event.Event {
	ev := &event.Event{
		Time: testTime, Op: event.OpAdd, Object: event.ObjectNexthop, Family: event.FamilyInet,
		Origin: event.OriginNetlink, Attach: event.AttachTracepoint,
		Gateway: netip.MustParseAddr("192.0.2.1"), NexthopID: 12, Protocol: 11, Oif: 3,
		Netns: 4026531840, Portid: 99, Seq: 5,
		Actor: actor("zebra", 700, 92),
	}
	ev.Dev.Set("eth0")
	return ev
}

func ruleFull() *event.Event {
	ev := &event.Event{
		Time: testTime, Op: event.OpAdd, Object: event.ObjectRule, Family: event.FamilyInet6,
		Origin: event.OriginNetlink, Attach: event.AttachFentry,
		Dst: netip.MustParsePrefix("2001:db8::/32"), Priority: 100, FwMark: 0x10, FwMask: 0xff,
		Action: 2, Goto: 200, Netns: 4026531840,
		Actor: actor("ip", 4410, 0),
	}
	ev.IifName.Set("eth0")
	ev.OifName.Set("vrf-blue")
	return ev
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// ip parses an address; "" is the zero (unset) address.
func ip(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

// uncapturedDelete is a tier 3 deletion whose request was not captured:
// the notification names the requester's portid, but no task is known.
func uncapturedDelete() *event.Event {
	ev := routeDelete()
	ev.Attach, ev.Portid, ev.Seq = event.AttachTracepoint, 3141, 0
	ev.Actor = event.Actor{}
	return ev
}
