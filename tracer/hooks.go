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
	Covers coverage
	Fentry []string
	Kprobe []string
}

type hookAlt struct {
	Fn     string
	Fentry []string
	Kprobe []string
}

// coverage is what tier 3 must capture (see tier3.Coverage).
type coverage = tier3.Coverage

const (
	coverRoute4  = tier3.RouteInet
	coverRoute6  = tier3.RouteInet6
	coverRule    = tier3.Rule
	coverNexthop = tier3.Nexthop
)

func exitPair(fn string) (fentry, kprobe []string) {
	return []string{"fexit_" + fn}, []string{"kprobe_" + fn, "kretprobe_" + fn}
}

func contextHook(fn, what string) hook {
	return hook{
		Fn:     fn,
		What:   what,
		Fentry: []string{"fentry_" + fn, "fexit_" + fn},
		Kprobe: []string{"kprobe_" + fn, "kretprobe_" + fn},
	}
}

func reportHook(fn, what string, essential bool, covers coverage) hook {
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
	newRule := reportHook("fib_nl_newrule", "rule add (both families)", true, coverRule)
	newRule.Alternatives = []hookAlt{reportAlt("fib_newrule")}
	delRule := reportHook("fib_nl_delrule", "rule delete (both families)", true, coverRule)
	delRule.Alternatives = []hookAlt{reportAlt("fib_delrule")}

	flush := hook{
		Fn:     "fib_table_flush",
		What:   "IPv4 kernel flushes (link down, address removal, nexthop removal): count",
		Fentry: []string{"fentry_fib_table_flush", "fexit_fib_table_flush"},
		Kprobe: []string{"kprobe_fib_table_flush_ctx", "kprobe_fib_table_flush", "kretprobe_fib_table_flush"},
	}
	delNexthop := reportHook("rtm_del_nexthop", "nexthop delete", true, coverNexthop)
	delNexthop.Fentry = []string{"fentry_rtm_del_nexthop", "fexit_rtm_del_nexthop"}
	delNexthop.Kprobe = []string{"kprobe_rtm_del_nexthop_ctx", "kprobe_rtm_del_nexthop", "kretprobe_rtm_del_nexthop"}

	return []hook{
		contextHook("ip_rt_ioctl", "IPv4 route ioctl (SIOCADDRT/SIOCDELRT): origin"),
		contextHook("ipv6_route_ioctl", "IPv6 route ioctl: origin"),
		contextHook("fib_netdev_event", "link down/unregister: cause of IPv4 flushes"),
		contextHook("fib_inetaddr_event", "IPv4 address removal: cause of IPv4 flushes"),
		contextHook("addrconf_notify", "IPv6 link down/unregister: cause of IPv6 removals"),
		contextHook("fib6_run_gc", "IPv6 garbage collection: timer removals"),
		reportHook("fib_table_insert", "IPv4 route add/replace", true, coverRoute4),
		reportHook("fib_table_delete", "IPv4 route delete", true, coverRoute4),
		flush,
		{
			Fn:     "fib_notify_alias_delete",
			What:   "IPv4 kernel flushes: each removed route",
			Fentry: []string{"fentry_fib_notify_alias_delete"},
			Kprobe: []string{"kprobe_fib_notify_alias_delete"},
		},
		reportHook("fib6_add", "IPv6 route add/replace", true, coverRoute6),
		reportHook("fib6_del", "IPv6 route delete (all removals)", true, coverRoute6),
		reportHook("ip6_route_del", "IPv6 route delete failures", false, 0),
		newRule,
		delRule,
		reportHook("rtm_new_nexthop", "nexthop add/replace", true, coverNexthop),
		delNexthop,
	}
}

// tracepoints are tier 3's syscall hooks, all in the nlcapture object.
var tracepoints = []struct{ Prog, Name string }{
	{"rt_sendmsg", "sys_enter_sendmsg"},
	{"rt_sendmmsg", "sys_enter_sendmmsg"},
	{"rt_sendto", "sys_enter_sendto"},
	{"rt_write", "sys_enter_write"},
	{"rt_recvmsg_enter", "sys_enter_recvmsg"},
	{"rt_recvmsg_exit", "sys_exit_recvmsg"},
	{"rt_recvfrom_enter", "sys_enter_recvfrom"},
	{"rt_recvfrom_exit", "sys_exit_recvfrom"},
	{"rt_ioctl_enter", "sys_enter_ioctl"},
	{"rt_ioctl_exit", "sys_exit_ioctl"},
}
