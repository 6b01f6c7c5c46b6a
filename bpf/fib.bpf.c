// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Tiers 1 and 2: the kernel's FIB mutation functions themselves.
 *
 * Every report hook is written once, as report_<fn>(args..., ret, attach),
 * and wrapped twice: as fexit (tier 1: args and result in one program) and as
 * kprobe + kretprobe (tier 2: args stashed per thread at entry, reported at
 * return). User space picks, per hook, the best pair that loads and attaches.
 *
 * Context hooks (ioctl entry points, netdev/inetaddr notifiers, IPv6 link
 * down, nexthop removal, IPv6 GC) only note which kernel path is running, so
 * that the FIB hooks under them can say why a change happened and whether
 * the current task is really the actor.
 *
 * Where each program runs, and where it builds its record:
 *
 * - Task context only (the task of an rtnetlink or ioctl request, or a
 *   notifier under RTNL): fib_table_insert, fib_table_delete,
 *   fib_table_flush, fib_notify_alias_delete, ip6_route_del, the rule and
 *   nexthop hooks, and the context hooks ip_rt_ioctl, ipv6_route_ioctl,
 *   fib_netdev_event, fib_inetaddr_event, addrconf_notify and
 *   rtm_del_nexthop. They build records in the shared per-CPU heap
 *   (common.h) and parse requests with rtnl_parse_heap, as tier 3's
 *   syscall programs do.
 * - Task or softirq context: fib6_add (routes from router advertisements
 *   are added in the receive softirq), fib6_del (the GC timer, router
 *   lifetimes ending) and fib6_run_gc (the GC timer). A softirq runs on top
 *   of whatever its CPU was doing, a task-context program half-way through
 *   filling the heap included: so fib6_add and fib6_del build their records
 *   in bh_scratch below and never touch the heap, and fib6_run_gc's
 *   programs write no record at all.
 */
#include "include/common.h"
#include "include/rtnl_parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NLM_F_REPLACE_ 0x100

/* BPF_CORE_READ_INTO copies sizeof(*dst) bytes: pass &e->gw (16 bytes) for
 * an in6_addr, and a __be32 pointer for an IPv4 address, never e->gw. */
#define KEYLENGTH 32

enum hook_id {
	H_FIB_TABLE_INSERT = 1,
	H_FIB_TABLE_DELETE,
	H_FIB_TABLE_FLUSH,
	H_FIB6_ADD,
	H_FIB6_DEL,
	H_IP6_ROUTE_DEL,
	H_NEWRULE,
	H_DELRULE,
	H_NEW_NEXTHOP,
	H_DEL_NEXTHOP,
	H_CTX,
};

/* Arguments stashed by a kprobe for its kretprobe. */
struct stash_key {
	__u64 id;
	__u64 hook;
};

struct hook_args {
	__u64 a[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct stash_key);
	__type(value, struct hook_args);
} stash SEC(".maps");

/* What a notifier context hook was told: the link, the address, whether
 * the link goes down or away. */
struct ctx_cause {
	__u32 ifindex;
	__u8 addr[4];
	__u8 prefixlen;
	__u8 op;
	__u8 pad[2];
};

/* The kernel path the current thread is in (set by context hooks). */
struct task_ctx {
	__u16 path;     /* enum rt_path of the outermost context hook */
	__u16 in_flush; /* inside fib_table_flush */
	__u32 detailed; /* per-route records emitted by the current flush */
	struct ctx_cause cause; /* what the outermost context hook was told */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

/*
 * IPv6 garbage collection (fib6_run_gc) removes expired routes by itself:
 * from the GC timer, in softirq on top of whatever task it interrupted, or
 * synchronously in a task (the route cache flush sysctl, dst GC). Its
 * removals are the kernel's, never the current task's. How a fib6_del is
 * known to be GC's, in a way that cannot stick:
 *
 * - fib6_run_gc's entry program pushes the net it collects onto a record
 *   keyed by the current task (its task_struct), and its exit program pops
 *   it. Keyed by task, not by CPU: a softirq runs on top of the task it
 *   interrupted, which can do nothing else until the softirq ends, so the
 *   record is that task's only while the GC runs; a task that runs GC
 *   itself may be preempted, or move to another CPU, between entry and
 *   exit, which left the old per-CPU counter at one on the CPU it left and
 *   made every change there a "GC removal" for the tracer's whole life.
 * - An exit can still be missed: a call in flight while the exit program
 *   is attached or detached returns through the trampoline or return probe
 *   it entered with; a kretprobe can run out of instances; a program can be
 *   skipped as recursive. So the record is trusted only while the kernel
 *   itself says a GC of that net is running: fib6_run_gc removes routes
 *   only while holding net->ipv6.fib6_gc_lock, and a record whose net's
 *   lock is free is stale and ignored. Real nesting is at most two deep (a
 *   softirq GC on top of a task's own, before the task took its lock), so
 *   an entry that finds two levels knows one is stale and starts afresh;
 *   the LRU map evicts records of tasks that are gone.
 * - Only a removal without a netlink request can be GC's: a request's
 *   change is the request's, whatever any record says.
 *
 * User space also attaches every exit program before its entry program
 * and detaches in the reverse order (hooks.go, load.go), so that attaching
 * and detaching leave no record behind in the first place.
 */
#define GC_MAX_NESTING 2

struct gc_run {
	__u64 nets[GC_MAX_NESTING]; /* struct net * of each nested run, outermost first */
	__u32 depth;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64); /* the task_struct the run is on */
	__type(value, struct gc_run);
} gc_runs SEC(".maps");

/*
 * Scratch for the programs that can run in softirq (fib6_add, fib6_del; see
 * the top of this file). It is never used by two programs at once on one
 * CPU: both functions are called only under their table's tb6_lock, taken
 * with spin_lock_bh, so their exit programs run with bottom halves off in
 * task and softirq context alike, and nothing else that uses this scratch
 * can start on the CPU before they end (no program of ours runs in hardirq
 * or NMI). busy checks that: a record that would overwrite one being built
 * is counted as lost instead of being mixed into it.
 */
struct bh_scratch_slot {
	struct rt_event ev;
	__u32 busy;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bh_scratch_slot);
} bh_scratch SEC(".maps");

/* Older kernels' names for fields that were renamed. */
struct fib_config___pre_5_18 {
	u8 fc_tos;
};

struct fib_config___pre_5_2 {
	__be32 fc_gw;
};

static __always_inline int stash_args(__u64 hook, __u64 a0, __u64 a1, __u64 a2, __u64 a3)
{
	struct stash_key k = { .id = bpf_get_current_pid_tgid(), .hook = hook };
	struct hook_args v = { .a = { a0, a1, a2, a3, 0 } };

	bpf_map_update_elem(&stash, &k, &v, BPF_ANY);
	return 0;
}

static __always_inline int take_args(__u64 hook, struct hook_args *out)
{
	struct stash_key k = { .id = bpf_get_current_pid_tgid(), .hook = hook };
	struct hook_args *v = bpf_map_lookup_elem(&stash, &k);

	if (!v)
		return -1;
	*out = *v;
	bpf_map_delete_elem(&stash, &k);
	return 0;
}

static __always_inline struct task_ctx *current_ctx(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	return bpf_map_lookup_elem(&task_ctxs, &id);
}

/* Whether net's GC lock is held by anyone: the kernel's own word that a
 * GC of net is running. On a kernel whose spinlock is no qspinlock
 * (PREEMPT_RT) there is nothing to read, and the record is trusted alone. */
static __always_inline int gc_lock_held(struct net *net)
{
	if (!bpf_core_field_exists(net->ipv6.fib6_gc_lock.rlock.raw_lock.val))
		return 1;
	return BPF_CORE_READ(net, ipv6.fib6_gc_lock.rlock.raw_lock.val.counter) != 0;
}

/* Whether the current context is inside a GC run of net. */
static __always_inline int gc_running(struct net *net)
{
	__u64 task = bpf_get_current_task();
	struct gc_run *r = bpf_map_lookup_elem(&gc_runs, &task);
	int owned = 0;

	if (!r || !net)
		return 0;
	for (int i = 0; i < GC_MAX_NESTING; i++) {
		if (i < r->depth && r->nets[i] == (__u64)net)
			owned = 1;
	}
	return owned && gc_lock_held(net);
}

static __always_inline void gc_enter(struct net *net)
{
	__u64 task = bpf_get_current_task();
	struct gc_run *r = bpf_map_lookup_elem(&gc_runs, &task);
	struct gc_run fresh = { .nets = { (__u64)net }, .depth = 1 };
	__u32 d;

	if (!r || r->depth >= GC_MAX_NESTING) {
		/* No run on this task, or more than can be real: start afresh. */
		bpf_map_update_elem(&gc_runs, &task, &fresh, BPF_ANY);
		return;
	}
	d = r->depth;
	if (d < GC_MAX_NESTING) /* always true; bounds the index for the verifier */
		r->nets[d] = (__u64)net;
	r->depth = d + 1;
}

/* Pops the innermost run; an exit whose entry was never seen (attached in
 * between) finds nothing and does nothing. */
static __always_inline void gc_exit(void)
{
	__u64 task = bpf_get_current_task();
	struct gc_run *r = bpf_map_lookup_elem(&gc_runs, &task);

	if (!r)
		return;
	if (r->depth <= 1) {
		bpf_map_delete_elem(&gc_runs, &task);
		return;
	}
	r->depth--;
}

static __always_inline void ctx_enter_cause(__u16 path, const struct ctx_cause *cause)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_ctx *c = bpf_map_lookup_elem(&task_ctxs, &id);
	struct task_ctx fresh = {};

	if (c) {
		if (path == RT_PATH_FIB_TABLE_FLUSH) {
			c->in_flush = 1;
			c->detailed = 0;
		} else if (!c->path) {
			c->path = path;
			if (cause)
				c->cause = *cause;
		}
		return;
	}
	if (path == RT_PATH_FIB_TABLE_FLUSH) {
		fresh.in_flush = 1;
	} else {
		fresh.path = path;
		if (cause)
			fresh.cause = *cause;
	}
	bpf_map_update_elem(&task_ctxs, &id, &fresh, BPF_ANY);
}

static __always_inline void ctx_enter(__u16 path)
{
	ctx_enter_cause(path, NULL);
}

#define NETDEV_DOWN_ 2
#define NETDEV_UNREGISTER_ 6

/* A netdevice notifier's cause: ptr is a struct netdev_notifier_info, whose
 * first member is the device. Going away is a delete; down (or a change of
 * state that flushes) a replace. */
static __always_inline void netdev_cause(struct ctx_cause *c, unsigned long event, void *ptr)
{
	struct net_device *dev = BPF_CORE_READ((struct netdev_notifier_info *)ptr, dev);

	c->ifindex = BPF_CORE_READ(dev, ifindex);
	c->op = event == NETDEV_UNREGISTER_ ? RT_OP_DELETE : RT_OP_REPLACE;
}

/* An inetaddr notifier's cause: ptr is the struct in_ifaddr removed. */
static __always_inline void inetaddr_cause(struct ctx_cause *c, void *ptr)
{
	struct in_ifaddr *ifa = ptr;
	__be32 local = BPF_CORE_READ(ifa, ifa_local);

	c->ifindex = BPF_CORE_READ(ifa, ifa_dev, dev, ifindex);
	__builtin_memcpy(c->addr, &local, 4);
	c->prefixlen = BPF_CORE_READ(ifa, ifa_prefixlen);
	c->op = RT_OP_DELETE;
}

static __always_inline void ctx_exit(__u16 path)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_ctx *c = bpf_map_lookup_elem(&task_ctxs, &id);

	if (!c)
		return;
	if (path == RT_PATH_FIB_TABLE_FLUSH)
		c->in_flush = 0;
	else if (c->path == path)
		c->path = 0;
	if (!c->path && !c->in_flush)
		bpf_map_delete_elem(&task_ctxs, &id);
}

/* Origin of a change: a netlink request (nlh set), else an ioctl or a
 * kernel path, from the context hooks. */
static __always_inline void set_origin(struct rt_event *e, struct nlmsghdr *nlh, __u32 portid)
{
	struct task_ctx *c;

	if (nlh) {
		e->origin = RT_ORIGIN_NETLINK;
		e->portid = portid;
		e->seq = BPF_CORE_READ(nlh, nlmsg_seq);
		e->nlmsg_type = BPF_CORE_READ(nlh, nlmsg_type);
		e->nlmsg_flags = BPF_CORE_READ(nlh, nlmsg_flags);
		return;
	}
	e->origin = RT_ORIGIN_KERNEL;
	c = current_ctx();
	if (!c)
		return;
	if (c->path == RT_PATH_IP_RT_IOCTL || c->path == RT_PATH_IPV6_ROUTE_IOCTL)
		e->origin = RT_ORIGIN_IOCTL;
	e->path = c->path;
	if (!e->path && c->in_flush)
		e->path = RT_PATH_FIB_TABLE_FLUSH;
	e->cause_ifindex = c->cause.ifindex;
	__builtin_memcpy(e->cause_addr, c->cause.addr, 4);
	e->cause_prefixlen = c->cause.prefixlen;
	e->cause_op = c->cause.op;
}

/* A fresh change record in the shared heap: task-context programs only. */
static __always_inline struct rt_event *change_event(__u8 attach)
{
	struct rt_heap *h = rt_heap();

	if (!h)
		return NULL;
	return rt_new_event(h, RT_KIND_CHANGE, attach);
}

/* A fresh change record in bh_scratch, for programs that can run in
 * softirq; bh_event_done must follow once it is emitted. */
static __always_inline struct rt_event *bh_change_event(__u8 attach)
{
	__u32 zero = 0;
	struct bh_scratch_slot *s = bpf_map_lookup_elem(&bh_scratch, &zero);
	struct rt_event *e;

	if (!s)
		return NULL;
	if (s->busy) {
		rt_count_lost();
		return NULL;
	}
	s->busy = 1;
	e = &s->ev;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = RT_KIND_CHANGE;
	e->attach = attach;
	/* the process record waits until bh_stamp_proc knows the task is
	 * the actor: in softirq it is whatever task was interrupted */
	rt_fill_actor_noproc(e);
	return e;
}

/* The process record of a bh_scratch record, once its origin says the
 * current task made the change: a netlink request, an ioctl, or a context
 * hook (a notifier running in the task whose request caused it). A GC or
 * router-advertisement change in softirq gets none (cookie 0). */
static __always_inline void bh_stamp_proc(struct rt_event *e)
{
	if (e->flags & (RT_F_KTHREAD | RT_F_IN_SOFTIRQ))
		return;
	if (e->origin == RT_ORIGIN_KERNEL && !e->path)
		return;
	e->proc_cookie = rt_proc_cookie((struct task_struct *)bpf_get_current_task(), e->tgid);
}

static __always_inline void bh_event_done(void)
{
	__u32 zero = 0;
	struct bh_scratch_slot *s = bpf_map_lookup_elem(&bh_scratch, &zero);

	if (s)
		s->busy = 0;
}

/* What fib_table_delete removed, as the kernel had it: the request may
 * name only a prefix, and the report should say what was really deleted. */
struct alias_info {
	__u32 oif;
	__u32 priority;
	__u32 nh_id;
	__u8 protocol;
	__u8 scope;
	__u8 type;
	__u8 gw_family;
	__u8 gw[16];
	char oif_name[RT_IFNAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct alias_info);
} deleted_alias SEC(".maps");

/* The device's name, read where the hook holds its net_device: the
 * link may be gone, or in a namespace user space does not follow, by the
 * time the record is read. */
static __always_inline void fill_dev_name(struct rt_event *e, struct net_device *dev)
{
	if (dev)
		BPF_CORE_READ_STR_INTO(&e->oif_name, dev, name);
}

/* --- IPv4 routes --- */

static __always_inline void fill_route4_cfg(struct rt_event *e, struct fib_table *tb, struct fib_config *cfg)
{
	__be32 dst = BPF_CORE_READ(cfg, fc_dst);

	e->object = RT_OBJ_ROUTE;
	e->family = AF_INET;
	e->netns = BPF_CORE_READ(cfg, fc_nlinfo.nl_net, ns.inum);
	e->table = BPF_CORE_READ(tb, tb_id);
	e->dst_len = BPF_CORE_READ(cfg, fc_dst_len);
	__builtin_memcpy(e->dst, &dst, 4);
	e->protocol = BPF_CORE_READ(cfg, fc_protocol);
	e->scope = BPF_CORE_READ(cfg, fc_scope);
	e->type = BPF_CORE_READ(cfg, fc_type);
	e->priority = BPF_CORE_READ(cfg, fc_priority);
	e->oif = BPF_CORE_READ(cfg, fc_oif);
	if (bpf_core_field_exists(cfg->fc_nh_id))
		e->nh_id = BPF_CORE_READ(cfg, fc_nh_id);
	if (bpf_core_field_exists(cfg->fc_dscp)) {
		BPF_CORE_READ_INTO(&e->tos, cfg, fc_dscp); /* dscp_t is one byte */
	} else {
		struct fib_config___pre_5_18 *old = (void *)cfg;

		e->tos = BPF_CORE_READ(old, fc_tos);
	}
	if (bpf_core_field_exists(cfg->fc_gw_family)) {
		e->gw_family = BPF_CORE_READ(cfg, fc_gw_family);
		if (e->gw_family == AF_INET) {
			__be32 gw = BPF_CORE_READ(cfg, fc_gw4);

			__builtin_memcpy(e->gw, &gw, 4);
		} else if (e->gw_family == AF_INET6) {
			BPF_CORE_READ_INTO(&e->gw, cfg, fc_gw6);
		}
	} else {
		struct fib_config___pre_5_2 *old = (void *)cfg;
		__be32 gw = BPF_CORE_READ(old, fc_gw);

		if (gw) {
			e->gw_family = AF_INET;
			__builtin_memcpy(e->gw, &gw, 4);
		}
	}
	set_origin(e, BPF_CORE_READ(cfg, fc_nlinfo.nlh), BPF_CORE_READ(cfg, fc_nlinfo.portid));
}

static __always_inline int report_fib_table_insert(struct net *net, struct fib_table *tb, struct fib_config *cfg,
						   int ret, __u8 attach)
{
	struct rt_event *e = change_event(attach);

	if (!e)
		return 0;
	fill_route4_cfg(e, tb, cfg);
	e->op = (BPF_CORE_READ(cfg, fc_nlflags) & NLM_F_REPLACE_) ? RT_OP_REPLACE : RT_OP_ADD;
	e->err = ret;
	rt_emit(e);
	return 0;
}

static __always_inline void merge_deleted_alias(struct rt_event *e, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct alias_info *ai = bpf_map_lookup_elem(&deleted_alias, &id);

	if (!ai)
		return;
	if (ret == 0) {
		e->oif = ai->oif;
		e->priority = ai->priority;
		e->nh_id = ai->nh_id;
		e->protocol = ai->protocol;
		e->scope = ai->scope;
		e->type = ai->type;
		e->gw_family = ai->gw_family;
		__builtin_memcpy(e->gw, ai->gw, sizeof(e->gw));
		__builtin_memcpy(e->oif_name, ai->oif_name, sizeof(e->oif_name));
	}
	bpf_map_delete_elem(&deleted_alias, &id);
}

static __always_inline int report_fib_table_delete(struct net *net, struct fib_table *tb, struct fib_config *cfg,
						   int ret, __u8 attach)
{
	struct rt_event *e = change_event(attach);

	if (!e)
		return 0;
	fill_route4_cfg(e, tb, cfg);
	e->op = RT_OP_DELETE;
	e->err = ret;
	merge_deleted_alias(e, ret);
	rt_emit(e);
	return 0;
}

/* Link-down and address-removal flushes never call fib_table_delete and
 * send no RTM_DELROUTE: each removed alias is reported from
 * fib_notify_alias_delete while a flush runs, and the flush itself with the
 * count it returns. */
static __always_inline int report_fib_table_flush(struct net *net, struct fib_table *tb, bool flush_all, int ret,
						  __u8 attach)
{
	struct task_ctx *c = current_ctx();
	struct rt_event *e;
	__u32 detailed = c ? c->detailed : 0;

	ctx_exit(RT_PATH_FIB_TABLE_FLUSH);
	if (ret <= 0)
		return 0;
	e = change_event(attach);
	if (!e)
		return 0;
	e->op = RT_OP_FLUSH;
	e->object = RT_OBJ_ROUTE;
	e->family = AF_INET;
	e->netns = rt_net_inum(net);
	e->table = BPF_CORE_READ(tb, tb_id);
	e->count = ret;
	e->reserved = detailed;
	set_origin(e, NULL, 0);
	if (!e->path)
		e->path = RT_PATH_FIB_TABLE_FLUSH;
	rt_emit(e);
	return 0;
}

static __always_inline void fill_alias(struct rt_event *e, struct fib_alias *fa)
{
	struct fib_info *fi = BPF_CORE_READ(fa, fa_info);

	e->type = BPF_CORE_READ(fa, fa_type);
	e->protocol = BPF_CORE_READ(fi, fib_protocol);
	e->scope = BPF_CORE_READ(fi, fib_scope);
	e->priority = BPF_CORE_READ(fi, fib_priority);
	if (BPF_CORE_READ(fi, nh)) {
		e->nh_id = BPF_CORE_READ(fi, nh, id);
	} else {
		struct net_device *dev = BPF_CORE_READ(fi, fib_nh[0].nh_common.nhc_dev);

		e->oif = BPF_CORE_READ(dev, ifindex);
		fill_dev_name(e, dev);
		e->gw_family = BPF_CORE_READ(fi, fib_nh[0].nh_common.nhc_gw_family);
		if (e->gw_family == AF_INET)
			BPF_CORE_READ_INTO((__be32 *)e->gw, fi, fib_nh[0].nh_common.nhc_gw.ipv4);
		else if (e->gw_family == AF_INET6)
			BPF_CORE_READ_INTO(&e->gw, fi, fib_nh[0].nh_common.nhc_gw.ipv6);
	}
}

/* Called for every alias the kernel removes: inside a flush it is the only
 * report of that route; inside fib_table_delete it records what the
 * delete removed, for the report at its exit. */
static __always_inline int report_alias_delete(struct net *net, __u32 key, struct fib_alias *fa, __u8 attach)
{
	struct task_ctx *c = current_ctx();
	struct rt_event *e = change_event(attach);
	__u64 id = bpf_get_current_pid_tgid();
	__be32 dst = bpf_htonl(key);

	if (!e)
		return 0;
	fill_alias(e, fa);
	if (!c || !c->in_flush) {
		struct alias_info ai = {
			.oif = e->oif,
			.priority = e->priority,
			.nh_id = e->nh_id,
			.protocol = e->protocol,
			.scope = e->scope,
			.type = e->type,
			.gw_family = e->gw_family,
		};

		__builtin_memcpy(ai.gw, e->gw, sizeof(ai.gw));
		__builtin_memcpy(ai.oif_name, e->oif_name, sizeof(ai.oif_name));
		bpf_map_update_elem(&deleted_alias, &id, &ai, BPF_ANY);
		return 0;
	}
	c->detailed++;
	e->op = RT_OP_DELETE;
	e->object = RT_OBJ_ROUTE;
	e->family = AF_INET;
	e->netns = rt_net_inum(net);
	e->table = BPF_CORE_READ(fa, tb_id);
	e->dst_len = KEYLENGTH - BPF_CORE_READ(fa, fa_slen);
	__builtin_memcpy(e->dst, &dst, 4);
	set_origin(e, NULL, 0);
	rt_emit(e);
	return 0;
}

/* --- IPv6 routes --- */

static __always_inline void fill_route6(struct rt_event *e, struct fib6_info *rt, struct nl_info *info)
{
	struct nexthop *nh = BPF_CORE_READ(rt, nh);

	e->object = RT_OBJ_ROUTE;
	e->family = AF_INET6;
	e->table = BPF_CORE_READ(rt, fib6_table, tb6_id);
	BPF_CORE_READ_INTO(&e->dst, rt, fib6_dst.addr);
	e->dst_len = BPF_CORE_READ(rt, fib6_dst.plen);
	BPF_CORE_READ_INTO(&e->src, rt, fib6_src.addr);
	e->src_len = BPF_CORE_READ(rt, fib6_src.plen);
	e->priority = BPF_CORE_READ(rt, fib6_metric);
	e->protocol = BPF_CORE_READ(rt, fib6_protocol);
	e->type = BPF_CORE_READ(rt, fib6_type);
	if (nh) {
		e->nh_id = BPF_CORE_READ(nh, id);
	} else {
		struct net_device *dev = BPF_CORE_READ(rt, fib6_nh[0].nh_common.nhc_dev);

		e->oif = BPF_CORE_READ(dev, ifindex);
		fill_dev_name(e, dev);
		e->gw_family = BPF_CORE_READ(rt, fib6_nh[0].nh_common.nhc_gw_family);
		if (e->gw_family)
			BPF_CORE_READ_INTO(&e->gw, rt, fib6_nh[0].nh_common.nhc_gw.ipv6);
	}
	if (info) {
		e->netns = BPF_CORE_READ(info, nl_net, ns.inum);
		set_origin(e, BPF_CORE_READ(info, nlh), BPF_CORE_READ(info, portid));
	} else {
		set_origin(e, NULL, 0);
	}
}

/* May run in softirq (router advertisements): records in bh_scratch. */
static __always_inline int report_fib6_add(struct fib6_node *root, struct fib6_info *rt, struct nl_info *info,
					   int ret, __u8 attach)
{
	struct rt_event *e = bh_change_event(attach);

	if (!e)
		return 0;
	fill_route6(e, rt, info);
	e->op = (e->nlmsg_flags & NLM_F_REPLACE_) ? RT_OP_REPLACE : RT_OP_ADD;
	e->err = ret;
	bh_stamp_proc(e);
	rt_emit(e);
	bh_event_done();
	return 0;
}

/* May run in softirq (the GC timer): records in bh_scratch. */
static __always_inline int report_fib6_del(struct fib6_info *rt, struct nl_info *info, int ret, __u8 attach)
{
	struct rt_event *e = bh_change_event(attach);
	struct net *net = NULL;

	if (!e)
		return 0;
	fill_route6(e, rt, info);
	if (info)
		net = BPF_CORE_READ(info, nl_net);
	if (e->origin != RT_ORIGIN_NETLINK && gc_running(net)) {
		e->origin = RT_ORIGIN_KERNEL;
		e->path = RT_PATH_FIB6_RUN_GC;
		e->flags |= RT_F_IN_SOFTIRQ; /* the current task is not the actor */
	}
	e->op = RT_OP_DELETE;
	e->err = ret;
	bh_stamp_proc(e);
	rt_emit(e);
	bh_event_done();
	return 0;
}

/* A failed IPv6 delete never reaches fib6_del: report it from here. */
static __always_inline int report_ip6_route_del(struct fib6_config *cfg, int ret, __u8 attach)
{
	struct rt_event *e;

	if (ret == 0)
		return 0; /* fib6_del reported it */
	e = change_event(attach);
	if (!e)
		return 0;
	e->op = RT_OP_DELETE;
	e->object = RT_OBJ_ROUTE;
	e->family = AF_INET6;
	e->err = ret;
	e->netns = BPF_CORE_READ(cfg, fc_nlinfo.nl_net, ns.inum);
	e->table = BPF_CORE_READ(cfg, fc_table);
	BPF_CORE_READ_INTO(&e->dst, cfg, fc_dst);
	e->dst_len = BPF_CORE_READ(cfg, fc_dst_len);
	e->priority = BPF_CORE_READ(cfg, fc_metric);
	e->protocol = BPF_CORE_READ(cfg, fc_protocol);
	e->oif = BPF_CORE_READ(cfg, fc_ifindex);
	BPF_CORE_READ_INTO(&e->gw, cfg, fc_gateway);
	if (e->gw[0] || e->gw[15])
		e->gw_family = AF_INET6;
	set_origin(e, BPF_CORE_READ(cfg, fc_nlinfo.nlh), BPF_CORE_READ(cfg, fc_nlinfo.portid));
	rt_emit(e);
	return 0;
}

/* --- rules and nexthops: the request is all these functions get --- */

static __always_inline int report_request(struct net *net, struct sk_buff *skb, struct nlmsghdr *nlh, int ret,
					  __u8 attach)
{
	struct rt_heap *h = rt_heap();
	struct rt_event *e;
	__u32 n, portid = 0;

	if (!h)
		return 0;
	e = rt_new_event(h, RT_KIND_CHANGE, attach);
	n = BPF_CORE_READ(nlh, nlmsg_len);
	if (n > RT_SCRATCH)
		n = RT_SCRATCH;
	if (bpf_probe_read_kernel(h->buf, n & (RT_SCRATCH * 2 - 1), nlh))
		return 0;
	if (rtnl_parse_heap(n) != RT_PARSE_OK)
		return 0;
	if (!net)
		net = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net);
	e->netns = rt_net_inum(net);
	bpf_probe_read_kernel(&portid, sizeof(portid),
			      (__u8 *)&skb->cb + bpf_core_field_offset(struct netlink_skb_parms, portid));
	e->origin = RT_ORIGIN_NETLINK;
	e->portid = portid;
	e->err = ret;
	rt_emit(e);
	return 0;
}

/* --- wrappers: one report function, two attach tiers --- */

/* Tier 2 halves: the kprobe stashes up to three arguments, the kretprobe
 * hands them back with the result. fexit (tier 1) needs every argument of
 * the kernel function declared, since the result follows the last one. */
#define KPROBE_PAIR(kfn, hook, T1, T2, T3, CALL)                             \
	SEC("kprobe/" #kfn)                                                  \
	int BPF_KPROBE(kprobe_##kfn, T1 a1, T2 a2, T3 a3)                    \
	{                                                                    \
		return stash_args(hook, (__u64)a1, (__u64)a2, (__u64)a3, 0); \
	}                                                                    \
	SEC("kretprobe/" #kfn)                                               \
	int BPF_KRETPROBE(kretprobe_##kfn, int ret)                          \
	{                                                                    \
		struct hook_args a;                                          \
		T1 a1;                                                       \
		T2 a2;                                                       \
		T3 a3;                                                       \
		if (take_args(hook, &a))                                     \
			return 0;                                            \
		a1 = (T1)a.a[0];                                             \
		a2 = (T2)a.a[1];                                             \
		a3 = (T3)a.a[2];                                             \
		(void)a1, (void)a2, (void)a3;                                \
		CALL;                                                        \
		return 0;                                                    \
	}

#define ATTACH RT_ATTACH_KPROBE
KPROBE_PAIR(fib_table_insert, H_FIB_TABLE_INSERT, struct net *, struct fib_table *, struct fib_config *,
	    report_fib_table_insert(a1, a2, a3, ret, ATTACH))
KPROBE_PAIR(fib_table_delete, H_FIB_TABLE_DELETE, struct net *, struct fib_table *, struct fib_config *,
	    report_fib_table_delete(a1, a2, a3, ret, ATTACH))
KPROBE_PAIR(fib6_add, H_FIB6_ADD, struct fib6_node *, struct fib6_info *, struct nl_info *,
	    report_fib6_add(a1, a2, a3, ret, ATTACH))
KPROBE_PAIR(fib6_del, H_FIB6_DEL, struct fib6_info *, struct nl_info *, void *, report_fib6_del(a1, a2, ret, ATTACH))
KPROBE_PAIR(ip6_route_del, H_IP6_ROUTE_DEL, struct fib6_config *, void *, void *,
	    report_ip6_route_del(a1, ret, ATTACH))
KPROBE_PAIR(fib_nl_newrule, H_NEWRULE, struct sk_buff *, struct nlmsghdr *, void *,
	    report_request(NULL, a1, a2, ret, ATTACH))
KPROBE_PAIR(fib_nl_delrule, H_DELRULE, struct sk_buff *, struct nlmsghdr *, void *,
	    report_request(NULL, a1, a2, ret, ATTACH))
KPROBE_PAIR(fib_newrule, H_NEWRULE, struct net *, struct sk_buff *, struct nlmsghdr *,
	    report_request(a1, a2, a3, ret, ATTACH))
KPROBE_PAIR(fib_delrule, H_DELRULE, struct net *, struct sk_buff *, struct nlmsghdr *,
	    report_request(a1, a2, a3, ret, ATTACH))
KPROBE_PAIR(rtm_new_nexthop, H_NEW_NEXTHOP, struct sk_buff *, struct nlmsghdr *, void *,
	    report_request(NULL, a1, a2, ret, ATTACH))
KPROBE_PAIR(rtm_del_nexthop, H_DEL_NEXTHOP, struct sk_buff *, struct nlmsghdr *, void *,
	    { ctx_exit(RT_PATH_REMOVE_NEXTHOP); report_request(NULL, a1, a2, ret, ATTACH); })
KPROBE_PAIR(fib_table_flush, H_FIB_TABLE_FLUSH, struct net *, struct fib_table *, void *,
	    report_fib_table_flush(a1, a2, 0, ret, ATTACH))
#undef ATTACH

#define ATTACH RT_ATTACH_FENTRY
SEC("fexit/fib_table_insert")
int BPF_PROG(fexit_fib_table_insert, struct net *net, struct fib_table *tb, struct fib_config *cfg,
	     struct netlink_ext_ack *extack, int ret)
{
	return report_fib_table_insert(net, tb, cfg, ret, ATTACH);
}

SEC("fexit/fib_table_delete")
int BPF_PROG(fexit_fib_table_delete, struct net *net, struct fib_table *tb, struct fib_config *cfg,
	     struct netlink_ext_ack *extack, int ret)
{
	return report_fib_table_delete(net, tb, cfg, ret, ATTACH);
}

SEC("fexit/fib6_add")
int BPF_PROG(fexit_fib6_add, struct fib6_node *root, struct fib6_info *rt, struct nl_info *info,
	     struct netlink_ext_ack *extack, int ret)
{
	return report_fib6_add(root, rt, info, ret, ATTACH);
}

SEC("fexit/fib6_del")
int BPF_PROG(fexit_fib6_del, struct fib6_info *rt, struct nl_info *info, int ret)
{
	return report_fib6_del(rt, info, ret, ATTACH);
}

SEC("fexit/ip6_route_del")
int BPF_PROG(fexit_ip6_route_del, struct fib6_config *cfg, struct netlink_ext_ack *extack, int ret)
{
	return report_ip6_route_del(cfg, ret, ATTACH);
}

SEC("fexit/fib_nl_newrule")
int BPF_PROG(fexit_fib_nl_newrule, struct sk_buff *skb, struct nlmsghdr *nlh, struct netlink_ext_ack *extack,
	     int ret)
{
	return report_request(NULL, skb, nlh, ret, ATTACH);
}

SEC("fexit/fib_nl_delrule")
int BPF_PROG(fexit_fib_nl_delrule, struct sk_buff *skb, struct nlmsghdr *nlh, struct netlink_ext_ack *extack,
	     int ret)
{
	return report_request(NULL, skb, nlh, ret, ATTACH);
}

/* Since 6.15 the rtnetlink handlers are thin wrappers that may be inlined;
 * these take the same request one level down. */
SEC("fexit/fib_newrule")
int BPF_PROG(fexit_fib_newrule, struct net *net, struct sk_buff *skb, struct nlmsghdr *nlh,
	     struct netlink_ext_ack *extack, bool rtnl_held, int ret)
{
	return report_request(net, skb, nlh, ret, ATTACH);
}

SEC("fexit/fib_delrule")
int BPF_PROG(fexit_fib_delrule, struct net *net, struct sk_buff *skb, struct nlmsghdr *nlh,
	     struct netlink_ext_ack *extack, bool rtnl_held, int ret)
{
	return report_request(net, skb, nlh, ret, ATTACH);
}

SEC("fexit/rtm_new_nexthop")
int BPF_PROG(fexit_rtm_new_nexthop, struct sk_buff *skb, struct nlmsghdr *nlh, struct netlink_ext_ack *extack,
	     int ret)
{
	return report_request(NULL, skb, nlh, ret, ATTACH);
}

SEC("fexit/rtm_del_nexthop")
int BPF_PROG(fexit_rtm_del_nexthop, struct sk_buff *skb, struct nlmsghdr *nlh, struct netlink_ext_ack *extack,
	     int ret)
{
	ctx_exit(RT_PATH_REMOVE_NEXTHOP);
	return report_request(NULL, skb, nlh, ret, ATTACH);
}

SEC("fexit/fib_table_flush")
int BPF_PROG(fexit_fib_table_flush, struct net *net, struct fib_table *tb, bool flush_all, int ret)
{
	return report_fib_table_flush(net, tb, flush_all, ret, ATTACH);
}
#undef ATTACH

/* Per-route detail of a flush: the alias being removed, seen before it is. */
SEC("fentry/fib_notify_alias_delete")
int BPF_PROG(fentry_fib_notify_alias_delete, struct net *net, u32 key, struct hlist_head *fah, struct fib_alias *fa)
{
	return report_alias_delete(net, key, fa, RT_ATTACH_FENTRY);
}

SEC("kprobe/fib_notify_alias_delete")
int BPF_KPROBE(kprobe_fib_notify_alias_delete, struct net *net, u32 key, struct hlist_head *fah, struct fib_alias *fa)
{
	return report_alias_delete(net, key, fa, RT_ATTACH_KPROBE);
}

/* --- context hooks: entry notes the path, exit clears it --- */

#define CONTEXT_HOOK_NAMED(kfn, name, path)  \
	SEC("fentry/" #kfn)                   \
	int BPF_PROG(fentry_##name)           \
	{                                     \
		ctx_enter(path);              \
		return 0;                     \
	}                                     \
	SEC("fexit/" #kfn)                    \
	int BPF_PROG(fexit_##name)            \
	{                                     \
		ctx_exit(path);               \
		return 0;                     \
	}                                     \
	SEC("kprobe/" #kfn)                   \
	int BPF_KPROBE(kprobe_##name)         \
	{                                     \
		ctx_enter(path);              \
		return 0;                     \
	}                                     \
	SEC("kretprobe/" #kfn)                \
	int BPF_KRETPROBE(kretprobe_##name)   \
	{                                     \
		ctx_exit(path);               \
		return 0;                     \
	}

#define CONTEXT_HOOK(kfn, path) CONTEXT_HOOK_NAMED(kfn, kfn, path)

CONTEXT_HOOK(ip_rt_ioctl, RT_PATH_IP_RT_IOCTL)
CONTEXT_HOOK(ipv6_route_ioctl, RT_PATH_IPV6_ROUTE_IOCTL)
/* Notifier callbacks, not the functions under them: a callback is called
 * through a pointer and so never inlined, while rt6_sync_down_dev (say) can
 * have an attachable copy that its real caller does not use. Each notes
 * what it was told: the cause's link, address and op. */
#define NOTIFIER_HOOK(kfn, path, fill)                                                      \
	SEC("fentry/" #kfn)                                                                  \
	int BPF_PROG(fentry_##kfn, struct notifier_block *nb, unsigned long event, void *ptr) \
	{                                                                                    \
		struct ctx_cause c = {};                                                     \
		fill;                                                                        \
		ctx_enter_cause(path, &c);                                                   \
		return 0;                                                                    \
	}                                                                                    \
	SEC("fexit/" #kfn)                                                                   \
	int BPF_PROG(fexit_##kfn)                                                            \
	{                                                                                    \
		ctx_exit(path);                                                              \
		return 0;                                                                    \
	}                                                                                    \
	SEC("kprobe/" #kfn)                                                                  \
	int BPF_KPROBE(kprobe_##kfn, struct notifier_block *nb, unsigned long event, void *ptr) \
	{                                                                                    \
		struct ctx_cause c = {};                                                     \
		fill;                                                                        \
		ctx_enter_cause(path, &c);                                                   \
		return 0;                                                                    \
	}                                                                                    \
	SEC("kretprobe/" #kfn)                                                               \
	int BPF_KRETPROBE(kretprobe_##kfn)                                                   \
	{                                                                                    \
		ctx_exit(path);                                                              \
		return 0;                                                                    \
	}

NOTIFIER_HOOK(fib_netdev_event, RT_PATH_FIB_NETDEV_EVENT, netdev_cause(&c, event, ptr))
NOTIFIER_HOOK(fib_inetaddr_event, RT_PATH_FIB_INETADDR_EVENT, inetaddr_cause(&c, ptr))
NOTIFIER_HOOK(addrconf_notify, RT_PATH_ADDRCONF_NOTIFY, netdev_cause(&c, event, ptr))

/* Entry halves of report hooks that also set a context. */
SEC("fentry/rtm_del_nexthop")
int BPF_PROG(fentry_rtm_del_nexthop)
{
	ctx_enter(RT_PATH_REMOVE_NEXTHOP);
	return 0;
}

SEC("kprobe/rtm_del_nexthop")
int BPF_KPROBE(kprobe_rtm_del_nexthop_ctx)
{
	ctx_enter(RT_PATH_REMOVE_NEXTHOP);
	return 0;
}

SEC("fentry/fib_table_flush")
int BPF_PROG(fentry_fib_table_flush)
{
	ctx_enter(RT_PATH_FIB_TABLE_FLUSH);
	return 0;
}

SEC("kprobe/fib_table_flush")
int BPF_KPROBE(kprobe_fib_table_flush_ctx)
{
	ctx_enter(RT_PATH_FIB_TABLE_FLUSH);
	return 0;
}

/* fib6_run_gc(expires, net, force): the exit needs no arguments, since it
 * pops the innermost run, so the kretprobe works like fexit. */
SEC("fentry/fib6_run_gc")
int BPF_PROG(fentry_fib6_run_gc, unsigned long expires, struct net *net)
{
	gc_enter(net);
	return 0;
}

SEC("fexit/fib6_run_gc")
int BPF_PROG(fexit_fib6_run_gc)
{
	gc_exit();
	return 0;
}

SEC("kprobe/fib6_run_gc")
int BPF_KPROBE(kprobe_fib6_run_gc, unsigned long expires, struct net *net)
{
	gc_enter(net);
	return 0;
}

SEC("kretprobe/fib6_run_gc")
int BPF_KRETPROBE(kretprobe_fib6_run_gc)
{
	gc_exit();
	return 0;
}

/* --- test entry: the GC run record, driven by gc_test.go --- */

/* gc_run_test runs one operation of the GC run record per
 * BPF_PROG_TEST_RUN, with the functions the hooks use, so that Go can check
 * the record's rules (an exit without entry does nothing, nesting, a stale
 * record ignored once its net's GC lock is free) on any kernel, this host
 * included. A syscall program runs in the caller's task, like a hook. */
enum gc_test_op {
	GC_TEST_ENTER = 1,
	GC_TEST_EXIT = 2,
	GC_TEST_RUNNING = 3,
	GC_TEST_LOCK = 4,
	GC_TEST_UNLOCK = 5,
};

struct gc_test_args {
	__u32 op;  /* enum gc_test_op */
	__u32 net; /* which stand-in net, 0 or 1 */
	__s32 result;
	__u32 pad;
};

/* Stand-ins for struct net: only the word of ipv6.fib6_gc_lock is ever
 * read, at the running kernel's offset, well inside 8 KiB (struct net is
 * some 4 KiB). */
#define GC_TEST_NET_SIZE (8 << 10)

struct gc_test_net {
	__u8 b[GC_TEST_NET_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct gc_test_net);
} gc_test_nets SEC(".maps");

SEC("syscall")
int gc_run_test(struct gc_test_args *a)
{
	__u32 idx = a->net;
	struct gc_test_net *fake = bpf_map_lookup_elem(&gc_test_nets, &idx);
	__u32 off = bpf_core_field_offset(struct net, ipv6.fib6_gc_lock.rlock.raw_lock.val);

	a->result = -1;
	if (!fake || off > GC_TEST_NET_SIZE - sizeof(__u32))
		return 0;
	a->result = 0;
	switch (a->op) {
	case GC_TEST_ENTER:
		gc_enter((struct net *)fake);
		break;
	case GC_TEST_EXIT:
		gc_exit();
		break;
	case GC_TEST_RUNNING:
		a->result = gc_running((struct net *)fake);
		break;
	case GC_TEST_LOCK:
		*(__u32 *)&fake->b[off] = 1;
		break;
	case GC_TEST_UNLOCK:
		*(__u32 *)&fake->b[off] = 0;
		break;
	default:
		a->result = -1;
	}
	return 0;
}
