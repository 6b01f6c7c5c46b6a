package tracer

import "github.com/routetrace/routetrace/tier3"

// A hook is one kernel function routetrace attaches to, with the programs
// each attach tier needs for it. Programs are named in the C (fib.bpf.c).
type hook struct {
	// Fn is the kernel function. Alternatives lists functions that take the
	// same role on other kernels, tried in order when Fn is missing.
	Fn           string
	Alternatives []hookAlt
	What         string
	// Essential hooks carry route/rule/nexthop changes: when one gets no
	// tier 1 or 2 attachment, its objects are captured at the syscalls.
	Essential bool
	// Covers is what tier 3 must capture when this essential hook is missing.
	Covers tier3.Coverage
	// Fentry and Kprobe are the programs of each tier, in attach order:
	// exit programs first, entry programs last (detach is the reverse).
	// An entry program that notes a state its exit clears (a context, the
	// IPv6 GC run, stashed arguments) must never run for a call whose exit
	// program is not yet attached, or no longer is: that call would leave
	// the state behind. The other way round, an exit without its entry,
	// finds nothing and does nothing.
	Fentry []string
	Kprobe []string
}

type hookAlt struct {
	Fn     string
	Fentry []string
	Kprobe []string
}

func exitPair(fn string) (fentry, kprobe []string) {
	return []string{"fexit_" + fn}, []string{"kretprobe_" + fn, "kprobe_" + fn}
}

func contextHook(fn, what string) hook {
	return hook{
		Fn:     fn,
		What:   what,
		Fentry: []string{"fexit_" + fn, "fentry_" + fn},
		Kprobe: []string{"kretprobe_" + fn, "kprobe_" + fn},
	}
}

func reportHook(fn, what string, essential bool, covers tier3.Coverage) hook {
	fe, kp := exitPair(fn)
	return hook{Fn: fn, What: what, Essential: essential, Covers: covers, Fentry: fe, Kprobe: kp}
}

func reportAlt(fn string) hookAlt {
	fe, kp := exitPair(fn)
	return hookAlt{Fn: fn, Fentry: fe, Kprobe: kp}
}

// hooks is every FIB hook, essential ones first. Context hooks come before
// the hooks they annotate so that no change slips by unannotated.
func hooks() []hook {
	newRule := reportHook("fib_nl_newrule", "rule add (both families)", true, tier3.Rule)
	newRule.Alternatives = []hookAlt{reportAlt("fib_newrule")}
	delRule := reportHook("fib_nl_delrule", "rule delete (both families)", true, tier3.Rule)
	delRule.Alternatives = []hookAlt{reportAlt("fib_delrule")}

	flush := hook{
		Fn:   "fib_table_flush",
		What: "IPv4 kernel flushes (link down, address removal, nexthop removal): count",
		// The kretprobe clears the context only when it finds the
		// arguments the stashing kprobe saved: the context kprobe last.
		Fentry: []string{"fexit_fib_table_flush", "fentry_fib_table_flush"},
		Kprobe: []string{"kretprobe_fib_table_flush", "kprobe_fib_table_flush", "kprobe_fib_table_flush_ctx"},
	}
	delNexthop := reportHook("rtm_del_nexthop", "nexthop delete", true, tier3.Nexthop)
	delNexthop.Fentry = []string{"fexit_rtm_del_nexthop", "fentry_rtm_del_nexthop"}
	delNexthop.Kprobe = []string{"kretprobe_rtm_del_nexthop", "kprobe_rtm_del_nexthop", "kprobe_rtm_del_nexthop_ctx"}

	return []hook{
		contextHook("ip_rt_ioctl", "IPv4 route ioctl (SIOCADDRT/SIOCDELRT): origin"),
		contextHook("ipv6_route_ioctl", "IPv6 route ioctl: origin"),
		contextHook("fib_netdev_event", "link down/unregister: cause of IPv4 flushes"),
		contextHook("fib_inetaddr_event", "IPv4 address removal: cause of IPv4 flushes"),
		contextHook("addrconf_notify", "IPv6 link down/unregister: cause of IPv6 removals"),
		contextHook("fib6_run_gc", "IPv6 garbage collection: timer removals"),
		reportHook("fib_table_insert", "IPv4 route add/replace", true, tier3.RouteInet),
		reportHook("fib_table_delete", "IPv4 route delete", true, tier3.RouteInet),
		flush,
		{
			Fn:     "fib_notify_alias_delete",
			What:   "IPv4 kernel flushes: each removed route",
			Fentry: []string{"fentry_fib_notify_alias_delete"},
			Kprobe: []string{"kprobe_fib_notify_alias_delete"},
		},
		reportHook("fib6_add", "IPv6 route add/replace", true, tier3.RouteInet6),
		reportHook("fib6_del", "IPv6 route delete (all removals)", true, tier3.RouteInet6),
		reportHook("ip6_route_del", "IPv6 route delete failures", false, 0),
		newRule,
		delRule,
		reportHook("rtm_new_nexthop", "nexthop add/replace", true, tier3.Nexthop),
		delNexthop,
	}
}

// Tier 3's programs, all in the nlcapture object, in attach order.
var (
	// socketProgs are the socket capture: tp_btf tracepoints that fire
	// only where netlink skbs are freed and read.
	socketProgs = []string{"rt_skb_copy", "rt_skb_consume"}
	// syscallProgs are the syscall capture's netlink programs; exits
	// before the entries that stash what they clear (see hook.Fentry).
	syscallProgs = []string{
		"rt_recvmsg_exit", "rt_recvfrom_exit",
		"rt_sendmsg", "rt_sendmmsg", "rt_sendto", "rt_write",
		"rt_recvmsg_enter", "rt_recvfrom_enter",
	}
	// ioctlProgs attribute route ioctls (net-tools route(8)): syscall
	// tracepoints whichever capture tier 3 uses, since no socket-layer
	// hook sees an ioctl.
	ioctlProgs = []string{"rt_ioctl_exit", "rt_ioctl_enter"}
)
