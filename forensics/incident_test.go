package forensics

import (
	"net/netip"
	"slices"
	"time"

	"github.com/routetrace/routetrace/event"
)

// The events below are modelled on vmtest/incident: systemd-networkd 252
// restarted with its defaults on a node where it manages nd0 (ifindex 3)
// next to a Calico-named veth (ifindex 5) and AWS-VPC-CNI-style rules. It
// removes every foreign rule, every foreign route on nd0 in every table and
// the device-less blackholes, and deletes the address 198.18.0.1/24 (and
// 2001:db8:ff::1/64) it did not configure, after which the kernel removes
// the routes that used them.

var t0 = time.Date(2026, 11, 27, 3, 4, 5, 100_000_000, time.UTC)

const (
	ndIfindex   = 3
	caliIfindex = 5
)

func name(s string) event.Name {
	var n event.Name
	n.Set(s)
	return n
}

func networkd() event.Actor {
	return event.Actor{
		Pid: 412, Tgid: 412, PPid: 1, UID: 101, CgroupID: 1234, Netns: 4026531840,
		Comm: name("systemd-network"), PComm: name("systemd"), Cookie: 7,
		Process: &event.Process{
			Exe:             "/usr/lib/systemd/systemd-networkd",
			Cmdline:         []string{"/lib/systemd/systemd-networkd"},
			Cgroup:          "/system.slice/systemd-networkd.service",
			CgroupHierarchy: "cgroup2",
			Unit:            "systemd-networkd.service",
		},
	}
}

func calicoNode() event.Actor {
	pod := &event.Pod{Name: "calico-node-x7k2p", Namespace: "kube-system", UID: "5c1d"}
	return event.Actor{
		Pid: 815, Tgid: 812, PPid: 790, UID: 0, CgroupID: 999, Netns: 4026531840,
		Comm: name("calico-node"), PComm: name("runc:[2:INIT]"), Cookie: 9,
		Process: &event.Process{
			Exe:         "/usr/bin/calico-node",
			Cmdline:     []string{"calico-node", "-felix"},
			Cgroup:      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5c1d.slice/cri-containerd-0123456789abcdef.scope",
			Unit:        "cri-containerd-0123456789abcdef.scope",
			ContainerID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			Runtime:     "containerd",
			PodUID:      "5c1d",
			Container:   &event.Container{ID: "0123456789abcdef", Name: "calico-node", Pod: pod},
		},
	}
}

// ipTool is a short-lived `ip` run by a shell, with no enrichment.
func ipTool(pid uint32) event.Actor {
	return event.Actor{Pid: pid, Tgid: pid, PPid: 700, Comm: name("ip"), PComm: name("bash"), CgroupID: 1}
}

const hostNetns = 4026531840

var caliLink = &event.Link{Name: "cali1a2b3c", Kind: "veth", CNI: "calico"}

type routeSpec struct {
	dst, src, gw string
	dev          string
	oif          uint32
	table        uint32
	proto        uint8
	typ          uint8
	metric       uint32
}

func route(at time.Time, op event.Op, actor event.Actor, r routeSpec) *event.Event {
	ev := &event.Event{
		Time: at, Op: op, Object: event.ObjectRoute, Origin: event.OriginNetlink, Attach: event.AttachFentry,
		Dst: netip.MustParsePrefix(r.dst), Table: r.table, Protocol: r.proto, Type: r.typ, Priority: r.metric,
		Oif: r.oif, Dev: name(r.dev), Netns: hostNetns, Actor: actor, Portid: 1, Seq: 1,
	}
	if ev.Type == 0 {
		ev.Type = event.RouteTypeUnicast
	}
	ev.Family = event.FamilyInet
	if ev.Dst.Addr().Is6() {
		ev.Family = event.FamilyInet6
	}
	if r.src != "" {
		ev.Src = netip.MustParsePrefix(r.src)
	}
	if r.gw != "" {
		ev.Gateway = netip.MustParseAddr(r.gw)
	}
	if r.dev == "cali1a2b3c" {
		ev.Victim.Link = caliLink
	}
	return ev
}

// kernelRemoval is a route the kernel removed because networkd deleted
// address addr from nd0.
func kernelRemoval(at time.Time, path event.Path, addr string, r routeSpec) *event.Event {
	ev := route(at, event.OpDelete, event.Actor{Kernel: true}, r)
	ev.Origin, ev.Path, ev.Portid, ev.Seq = event.OriginKernel, path, 0, 0
	ev.Cause = event.Cause{Valid: true, Object: event.ObjectAddr, Op: event.OpDelete, Ifindex: ndIfindex,
		Prefix: netip.MustParsePrefix(addr), Actor: networkd()}
	return ev
}

type ruleSpec struct {
	family   uint8
	src, dst string
	iif      string
	pref     uint32
	table    uint32
}

func rule(at time.Time, op event.Op, actor event.Actor, r ruleSpec) *event.Event {
	ev := &event.Event{
		Time: at, Op: op, Object: event.ObjectRule, Family: r.family, Origin: event.OriginNetlink, Attach: event.AttachFentry,
		Priority: r.pref, Table: r.table, Action: event.RuleActionToTable, IifName: name(r.iif),
		Netns: hostNetns, Actor: actor, Portid: 1, Seq: 1,
	}
	if ev.Family == 0 {
		ev.Family = event.FamilyInet
	}
	if r.src != "" {
		ev.Src = netip.MustParsePrefix(r.src)
	}
	if r.dst != "" {
		ev.Dst = netip.MustParsePrefix(r.dst)
	}
	return ev
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// cniSetup is the CNI state as it was installed two hours before.
func cniSetup() []*event.Event {
	at := t0.Add(-2 * time.Hour)
	ip := func(n int) event.Actor { return ipTool(uint32(3000 + n)) }
	return []*event.Event{
		route(at, event.OpAdd, calicoNode(), routeSpec{dst: "10.244.0.5/32", dev: "cali1a2b3c", oif: caliIfindex, table: 254, proto: 4}),
		route(at.Add(ms(1)), event.OpAdd, calicoNode(), routeSpec{dst: "10.244.0.5/32", dev: "cali1a2b3c", oif: caliIfindex, table: 101, proto: 4}),
		route(at.Add(ms(2)), event.OpAdd, calicoNode(), routeSpec{dst: "10.244.0.0/26", table: 254, proto: 12, typ: event.RouteTypeBlackhole}),
		route(at.Add(ms(3)), event.OpAdd, ip(1), routeSpec{dst: "10.244.1.0/24", src: "198.18.0.1/32", gw: "198.18.0.254", dev: "nd0", oif: ndIfindex, table: 254, proto: 12}),
		route(at.Add(ms(4)), event.OpAdd, ip(2), routeSpec{dst: "10.244.2.0/24", dev: "nd0", oif: ndIfindex, table: 254, proto: 4}),
		route(at.Add(ms(5)), event.OpAdd, ip(3), routeSpec{dst: "10.244.2.0/24", dev: "nd0", oif: ndIfindex, table: 100, proto: 4}),
		route(at.Add(ms(6)), event.OpAdd, ip(4), routeSpec{dst: "10.244.3.0/24", gw: "192.0.2.254", dev: "nd0", oif: ndIfindex, table: 100, proto: 12}),
		route(at.Add(ms(7)), event.OpAdd, ip(5), routeSpec{dst: "2001:db8:244::/64", dev: "nd0", oif: ndIfindex, table: 254, proto: 4, metric: 1024}),
		rule(at.Add(ms(8)), event.OpAdd, ip(6), ruleSpec{dst: "10.244.0.5/32", pref: 512, table: 254}),
		rule(at.Add(ms(9)), event.OpAdd, ip(7), ruleSpec{src: "10.244.0.5/32", pref: 1536, table: 101}),
		rule(at.Add(ms(10)), event.OpAdd, ip(8), ruleSpec{src: "10.244.2.7/32", pref: 1536, table: 100}),
		rule(at.Add(ms(11)), event.OpAdd, ip(9), ruleSpec{iif: "nd0", pref: 1600, table: 100}),
		rule(at.Add(ms(12)), event.OpAdd, ip(10), ruleSpec{iif: "cali1a2b3c", pref: 1601, table: 101}),
		rule(at.Add(ms(13)), event.OpAdd, ip(11), ruleSpec{family: event.FamilyInet6, src: "fd00:244::5/128", pref: 1536, table: 101}),
	}
}

// networkdRestart is what `systemctl restart systemd-networkd` removed,
// in 0.3 s: 6 rules, 6 routes itself, and 3 routes by the kernel.
func networkdRestart() []*event.Event {
	nd := networkd()
	return []*event.Event{
		rule(t0, event.OpDelete, nd, ruleSpec{dst: "10.244.0.5/32", pref: 512, table: 254}),
		rule(t0.Add(ms(10)), event.OpDelete, nd, ruleSpec{src: "10.244.0.5/32", pref: 1536, table: 101}),
		rule(t0.Add(ms(20)), event.OpDelete, nd, ruleSpec{src: "10.244.2.7/32", pref: 1536, table: 100}),
		rule(t0.Add(ms(30)), event.OpDelete, nd, ruleSpec{iif: "nd0", pref: 1600, table: 100}),
		rule(t0.Add(ms(40)), event.OpDelete, nd, ruleSpec{iif: "cali1a2b3c", pref: 1601, table: 101}),
		rule(t0.Add(ms(50)), event.OpDelete, nd, ruleSpec{family: event.FamilyInet6, src: "fd00:244::5/128", pref: 1536, table: 101}),
		route(t0.Add(ms(100)), event.OpDelete, nd, routeSpec{dst: "10.244.2.0/24", dev: "nd0", oif: ndIfindex, table: 254, proto: 4}),
		route(t0.Add(ms(110)), event.OpDelete, nd, routeSpec{dst: "10.244.2.0/24", dev: "nd0", oif: ndIfindex, table: 100, proto: 4}),
		route(t0.Add(ms(120)), event.OpDelete, nd, routeSpec{dst: "10.244.3.0/24", gw: "192.0.2.254", dev: "nd0", oif: ndIfindex, table: 100, proto: 12}),
		route(t0.Add(ms(130)), event.OpDelete, nd, routeSpec{dst: "10.244.0.0/26", table: 254, proto: 12, typ: event.RouteTypeBlackhole}),
		route(t0.Add(ms(140)), event.OpDelete, nd, routeSpec{dst: "fd00:244::/64", table: 254, proto: 12, typ: event.RouteTypeBlackhole, metric: 1024}),
		route(t0.Add(ms(150)), event.OpDelete, nd, routeSpec{dst: "2001:db8:244::/64", dev: "nd0", oif: ndIfindex, table: 254, proto: 4, metric: 1024}),
		kernelRemoval(t0.Add(ms(250)), event.PathFibInetaddrEvent, "198.18.0.1/24",
			routeSpec{dst: "10.244.1.0/24", src: "198.18.0.1/32", gw: "198.18.0.254", dev: "nd0", oif: ndIfindex, table: 254, proto: 12}),
		kernelRemoval(t0.Add(ms(290)), event.PathAddrconfNotify, "2001:db8:ff::1/64",
			routeSpec{dst: "2001:db8:ff::/64", dev: "nd0", oif: ndIfindex, table: 254, proto: 2, metric: 256}),
		kernelRemoval(t0.Add(ms(300)), event.PathAddrconfNotify, "2001:db8:ff::1/64",
			routeSpec{dst: "2001:db8:ff::1/128", dev: "nd0", oif: ndIfindex, table: 255, proto: 2, typ: 2}),
	}
}

func incident() []*event.Event { return slices.Concat(cniSetup(), networkdRestart()) }

// now is when the SRE asks: six hours after the restart.
var now = t0.Add(6 * time.Hour)
