// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Enforce mode: protected routes, rules and nexthops cannot be removed (or
 * replaced) by anyone the policy does not allow. BPF LSM programs refuse the
 * request before the kernel acts on it: the requester sees EPERM.
 *
 *  - lsm/netlink_send judges every message of an rtnetlink skb, and every
 *    attribute of each that matters, streamed from the skb with bpf_loop:
 *    no message or attribute count is a limit, so a protected change cannot
 *    hide behind 64 harmless messages or 32 harmless attributes.
 *  - lsm/file_ioctl judges SIOCADDRT/SIOCDELRT (net-tools `route`).
 *  - enforce_test, a socket filter, runs the same walk and matcher over
 *    bytes in a map, for BPF_PROG_TEST_RUN from Go tables: the only
 *    difference from the LSM is where the bytes are (enf_walk.src).
 *
 * Fail closed: a message that could touch protected state (a route, rule,
 * nexthop, link or address request) and cannot be read whole is refused
 * with a reason (policy.h, enum enf_reason). Other messages pass: the kernel
 * does not act on bytes it cannot parse either.
 *
 * The enforcer uses its own per-CPU scratch (never the tracer's heap, which
 * programs running in softirq share) and its own ring buffer and stats.
 */
#include "include/common.h"
#include "include/rtnl_parse.h"
#include "include/policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define IFLA_IFNAME 3
#define IFLA_ALT_IFNAME 53
#define FRA_PRIORITY 6
#define RTA_MULTIPATH 9
#define ENF_PAYLOAD 20 /* payload bytes an attribute is read for: RTA_VIA's 2 + 16 at most */
#define ENF_HEAD 32    /* nlmsghdr + the largest family header (ifinfomsg) */
#define ENF_MAX_LOOPS (1 << 23) /* bpf_loop's own limit */

/* A refusal: the request as parsed, and why. */
struct enf_verdict {
	struct rt_event ev; /* kind RT_KIND_REQUEST, origin netlink or ioctl */
	__u32 rule;         /* rule id, ENF_NO_RULE when a fail-closed reason has none */
	__u32 reason;       /* enum enf_reason */
	__u32 msg_index;    /* the refused message's index in its skb (0 for ioctl) */
	__u32 generation;   /* enf_config.generation of the set that judged */
};

/* enf_stats indexes. */
enum enf_stat {
	ENF_S_CHECKED = 0,    /* requests judged (skbs or ioctls in enforced namespaces) */
	ENF_S_BLOCKED = 1,    /* refused, whatever the reason */
	ENF_S_FAILCLOSED = 2, /* of which for a fail-closed reason */
	ENF_S_LOST = 3,       /* verdict records the ring had no room for */
	ENF_S_COUNT = 4,
};

struct enf_scratch {
	/* A message of at most RT_SCRATCH bytes, read whole: its attributes
	 * are then parsed in place, as rtnl_parse_heap does, with no read per
	 * attribute. Twice the size: rd* mask offsets and read 16 bytes. */
	__u8 msg[RT_SCRATCH * 2];
	/* Longer messages are streamed: their headers and each attribute's
	 * first ENF_PAYLOAD bytes land here. */
	__u8 buf[RT_SCRATCH * 2];
	struct enf_verdict v;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_scratch);
} enf_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} enf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENF_S_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} enf_stats SEC(".maps");

/* The test program's input: netlink messages as an skb would carry them. */
#define ENF_TEST_MAX (1 << 16)
struct enf_test_input {
	__u32 len;
	__u32 netns;
	__u8 data[ENF_TEST_MAX];
};

struct enf_test_result {
	__u32 refused;
	__u32 rule;
	__u32 reason;
	__u32 msg_index; /* the refused message */
	__u32 msgs;      /* messages walked */
	__u32 generation;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_test_input);
} enf_test_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_test_result);
} enf_test_out SEC(".maps");

/* Forces bpf2go to emit the Go types. */
const struct enf_verdict *unused_enf_verdict __attribute__((unused));
const struct enf_test_result *unused_enf_test_result __attribute__((unused));
const struct enf_test_input *unused_enf_test_input __attribute__((unused));

static __always_inline struct enf_scratch *enf_scratch_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&enf_scratch, &zero);
}

static __always_inline void enf_count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&enf_stats, &which);
	if (n)
		*n += 1;
}

/* One request being judged. Lives on the program's stack: bpf_loop takes
 * its context from there; the callbacks find the scratch themselves. */
struct enf_walk {
	__u64 src; /* kernel address of the first message */
	__u64 len;
	__u64 off; /* the message being walked */
	__u32 index;
	__u32 set;
	__u32 netns;
	__u32 refused;
	__u32 rule;
	__u32 reason;
	__u32 allowed; /* 0: not looked at yet, 1: allowed, 2: not */
	__u32 done;    /* the walk reached the end of the skb */
	__u32 portid;  /* the sender's, for joining verdicts with tier 3's requests */
	__u32 pad;
};

/* The attributes of one message. */
struct enf_attrs {
	__u64 src;
	__u64 off; /* absolute offsets from src */
	__u64 end;
	__u64 base;     /* the message's offset: msg[0] is src + base */
	__u64 buffered; /* the message is in the scratch's msg */
	__u32 netns;
	__u32 set;
	__u32 bad; /* a fail-closed reason, 0: none */
	__u32 done;
	struct enf_facts f;
};

/* The rtnexthops of one RTA_MULTIPATH. */
struct enf_hops {
	__u64 src;
	__u64 off;
	__u64 end;
	__u32 netns;
	__u32 set;
	__u32 bad;
	__u32 rule; /* rule id + 1 of the first protected ifindex */
	__u32 done;
	__u32 pad;
};

static long enf_hop(__u64 i, void *ctx)
{
	struct enf_hops *h = ctx;
	struct {
		__u16 len;
		__u8 flags;
		__u8 hops;
		__s32 ifindex;
	} nh;
	__u32 id;

	if (h->off + sizeof(nh) > h->end) {
		/* the kernel rejects trailing bytes that are no rtnexthop */
		if (h->off != h->end)
			h->bad = ENF_R_BADNH;
		h->done = 1;
		return 1;
	}
	if (bpf_probe_read_kernel(&nh, sizeof(nh), (void *)(h->src + h->off))) {
		h->bad = ENF_R_READ;
		return 1;
	}
	if (nh.len < sizeof(nh) || h->off + nh.len > h->end) {
		h->bad = ENF_R_BADNH;
		return 1;
	}
	if (!h->rule && (id = enf_iface_rule(h->netns, nh.ifindex, h->set)))
		h->rule = id;
	h->off += (nh.len + 3) & ~3U;
	if (h->off >= h->end) {
		h->done = 1;
		return 1;
	}
	return 0;
}

static __always_inline void enf_multipath(struct enf_attrs *a, __u64 p, __u32 plen)
{
	struct enf_hops h = {.src = a->src, .off = p, .end = p + plen, .netns = a->netns, .set = a->set};

	if (!plen)
		return;
	bpf_loop(plen / 8 + 1, enf_hop, &h, 0);
	if (!h.done && !h.bad)
		h.bad = ENF_R_BOUND;
	if (h.bad)
		a->bad = h.bad;
	else if (h.rule && !a->f.mp_rule)
		a->f.mp_rule = h.rule;
}

static long enf_attr(__u64 i, void *ctx)
{
	struct enf_attrs *a = ctx;
	struct enf_scratch *s = enf_scratch_get();
	struct {
		__u16 len;
		__u16 type;
	} nla;
	struct rt_event *e;
	__u32 plen, n;
	__u16 type;

	if (!s) {
		a->bad = ENF_R_NOSCRATCH;
		return 1;
	}
	e = &s->v.ev;
	if (a->off + 4 > a->end) {
		/* 1-3 bytes of slack: the kernel's parser ignores them too */
		a->done = 1;
		return 1;
	}
	if (a->buffered) {
		nla.len = rd16(s->msg, a->off - a->base);
		nla.type = rd16(s->msg, a->off - a->base + 2);
	} else if (bpf_probe_read_kernel(&nla, sizeof(nla), (void *)(a->src + a->off))) {
		a->bad = ENF_R_READ;
		return 1;
	}
	if (nla.len < 4 || a->off + nla.len > a->end) {
		a->bad = ENF_R_BADATTR;
		return 1;
	}
	type = nla.type & NLA_TYPE_MASK;
	plen = nla.len - 4;
	if (a->buffered) {
		/* bytes past plen are the message's next ones: the rd* users
		 * look at plen, as in rtnl_parse_heap */
		rtnl_parse_attr(e, s->msg, type, a->off - a->base + 4, plen);
	} else {
		n = plen < ENF_PAYLOAD ? plen : ENF_PAYLOAD;
		__builtin_memset(s->buf, 0, 24);
		if (n && bpf_probe_read_kernel(s->buf, n & 31, (void *)(a->src + a->off + 4))) {
			a->bad = ENF_R_READ;
			return 1;
		}
		rtnl_parse_attr(e, s->buf, type, 0, plen);
	}
	if (e->object == RT_OBJ_RULE && type == FRA_PRIORITY && plen >= 4)
		a->f.has_prio = 1;
	else if (e->object == RT_OBJ_LINK && (type == IFLA_IFNAME || type == IFLA_ALT_IFNAME))
		a->f.has_name = 1;
	else if (e->object == RT_OBJ_ROUTE && type == RTA_MULTIPATH)
		enf_multipath(a, a->off + 4, plen);
	if (a->bad)
		return 1;
	a->off += (nla.len + 3) & ~3U;
	if (a->off >= a->end) {
		a->done = 1;
		return 1;
	}
	return 0;
}

/* Whether an operation on this object can count at all: adds of routes
 * only inside a protected prefix with more_specific, adds of rules and
 * nexthops never, link requests only when deleting or setting down. Saves
 * the attribute walk for the common harmless request. */
static __always_inline int enf_may_count(const struct rt_event *e, const struct enf_config *cfg)
{
	if (e->op == RT_OP_REPLACE && !cfg->replace && e->object != RT_OBJ_LINK)
		return 0;
	switch (e->object) {
	case RT_OBJ_ROUTE:
		return e->op != RT_OP_ADD || cfg->more_specific;
	case RT_OBJ_RULE:
	case RT_OBJ_NEXTHOP:
		return e->op != RT_OP_ADD;
	case RT_OBJ_LINK:
		return e->nlmsg_type == RTM_DELLINK || (e->flags & RT_F_LINK_DOWN);
	}
	return 1; /* RTM_DELADDR */
}

/* Whether the current task is allowed (policy.h): a global function, so
 * the verifier checks its loop once, not at every refusal site. */
__noinline int enf_allowed(__u32 set)
{
	return enf_actor_allowed(set & 1);
}

/* Refuses the walk's current message unless the actor is allowed. */
static __always_inline void enf_refuse(struct enf_walk *w, __u32 rule, __u32 reason)
{
	if (!w->allowed)
		w->allowed = enf_allowed(w->set) ? 1 : 2;
	if (w->allowed == 1)
		return;
	w->refused = 1;
	w->rule = rule;
	w->reason = reason;
}

/* Judges the message of nlmsg_len bytes at src + off: 0 when it passes,
 * else its reason + 1, with the rule id in the scratch's verdict. A global
 * function with scalar arguments: the verifier checks it, and the attribute
 * and nexthop loops under it, once, not for every state of the message
 * loop that calls it. */
__noinline int enf_judge_msg(__u64 src, __u64 off, __u32 nlmsg_len, __u32 netns, __u32 set)
{
	struct enf_attrs a = {.src = src, .base = off, .netns = netns, .set = set & 1};
	struct enf_scratch *s = enf_scratch_get();
	struct enf_config *cfg = bpf_map_lookup_elem(&enf_configs, &a.set);
	__u32 hdrlen = 0, n, rule = ENF_NO_RULE, reason = 0;
	struct rt_event *e;
	__u8 *head;

	if (!s || !cfg)
		return ENF_R_NOSCRATCH + 1;
	e = &s->v.ev;
	s->v.rule = ENF_NO_RULE;
	__builtin_memset(e, 0, sizeof(*e));
	n = nlmsg_len < ENF_HEAD ? nlmsg_len : ENF_HEAD;
	if (nlmsg_len <= RT_SCRATCH) {
		__u32 len = nlmsg_len;

		/* one read for the whole message (most are under 100 bytes);
		 * the mask, which clang would drop as redundant, bounds the
		 * size for the verifier */
		barrier_var(len);
		if (bpf_probe_read_kernel(s->msg, len & (RT_SCRATCH * 2 - 1), (void *)(src + off)))
			return ENF_R_READ + 1;
		a.buffered = 1;
		head = s->msg;
	} else {
		__builtin_memset(s->buf, 0, ENF_HEAD);
		if (bpf_probe_read_kernel(s->buf, n & (ENF_HEAD * 2 - 1), (void *)(src + off)))
			return ENF_R_READ + 1;
		head = s->buf;
	}
	if (rtnl_parse_head(e, head, n, &hdrlen) != RT_PARSE_OK)
		return ENF_R_SHORT + 1;
	if (!enf_may_count(e, cfg))
		return 0;
	a.off = off + NLMSG_HDRLEN + hdrlen;
	a.end = off + nlmsg_len;
	if (a.off < a.end) {
		bpf_loop((a.end - a.off) / 4 + 1, enf_attr, &a, 0);
		if (!a.done && !a.bad)
			a.bad = ENF_R_BOUND;
		if (a.bad)
			return a.bad + 1;
	}
	rtnl_parse_finish(e);
	if (!enf_match(e, &a.f, netns, a.set, cfg, &rule, &reason))
		return 0;
	s->v.rule = rule;
	return reason + 1;
}

static long enf_msg(__u64 i, void *ctx)
{
	struct enf_walk *w = ctx;
	struct enf_scratch *s;
	struct nlmsghdr nlh;

	if (w->off + NLMSG_HDRLEN > w->len) {
		w->done = 1; /* slack shorter than a header: the kernel stops too */
		return 1;
	}
	if (bpf_probe_read_kernel(&nlh, sizeof(nlh), (void *)(w->src + w->off))) {
		enf_refuse(w, ENF_NO_RULE, ENF_R_READ);
		return 1;
	}
	if (nlh.nlmsg_len < NLMSG_HDRLEN || nlh.nlmsg_len > w->len - w->off) {
		/* the kernel stops at such a message, but say so if it is one
		 * that could touch protected state */
		if (rtnl_type_wanted(nlh.nlmsg_type))
			enf_refuse(w, ENF_NO_RULE, ENF_R_BADLEN);
		w->done = 1;
		return 1;
	}
	if (rtnl_type_wanted(nlh.nlmsg_type)) {
		int r = enf_judge_msg(w->src, w->off, nlh.nlmsg_len, w->netns, w->set);

		if (r) {
			s = enf_scratch_get();
			enf_refuse(w, s && r != ENF_R_NOSCRATCH + 1 ? s->v.rule : ENF_NO_RULE, r - 1);
		}
	}
	if (w->refused || w->allowed == 1)
		return 1; /* decided: refused, or an allowed actor */
	w->index++;
	w->off += (nlh.nlmsg_len + 3) & ~3U;
	if (w->off >= w->len) {
		w->done = 1;
		return 1;
	}
	return 0;
}

/* Writes the verdict record of a refusal, counted. */
static __always_inline void enf_emit(struct enf_scratch *s, __u8 origin, __u32 netns, __u32 portid, __u32 rule,
				     __u32 reason, __u32 index, __u32 generation)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct enf_verdict *v = &s->v;
	struct rt_event *e = &v->ev;

	/* the actor, read from the task (the socket filter test program has
	 * no current-task helpers but these) */
	e->kind = RT_KIND_REQUEST;
	e->origin = origin;
	e->netns = netns;
	e->portid = portid;
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = BPF_CORE_READ(task, pid);
	e->tgid = BPF_CORE_READ(task, tgid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	e->actor_netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	BPF_CORE_READ_STR_INTO(&e->pcomm, task, real_parent, comm);
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		e->flags |= RT_F_KTHREAD;
	v->rule = rule;
	v->reason = reason;
	v->msg_index = index;
	v->generation = generation;
	enf_count(ENF_S_BLOCKED);
	if (reason != ENF_R_PROTECTED)
		enf_count(ENF_S_FAILCLOSED);
	if (bpf_ringbuf_output(&enf_events, v, sizeof(*v), 0))
		enf_count(ENF_S_LOST);
}

/* Judges an skb's messages; returns whether to refuse. */
static __always_inline int enf_judge_skb(struct enf_walk *w, int nonlinear)
{
	struct enf_scratch *s;
	struct enf_config *cfg;
	__u64 loops;

	w->set = enf_current_set();
	if (!enf_netns_enforced(w->netns, w->set))
		return 0;
	cfg = bpf_map_lookup_elem(&enf_configs, &w->set);
	s = enf_scratch_get();
	if (!cfg || !s)
		return 0; /* cannot happen: arrays */
	enf_count(ENF_S_CHECKED);
	if (nonlinear) {
		enf_refuse(w, ENF_NO_RULE, ENF_R_NONLINEAR);
	} else {
		loops = w->len / NLMSG_HDRLEN + 1;
		bpf_loop(loops < ENF_MAX_LOOPS ? loops : ENF_MAX_LOOPS, enf_msg, w, 0);
		if (!w->done && !w->refused && w->allowed != 1)
			enf_refuse(w, ENF_NO_RULE, ENF_R_BOUND);
	}
	if (!w->refused)
		return 0;
	s = enf_scratch_get();
	if (s)
		enf_emit(s, RT_ORIGIN_NETLINK, w->netns, w->portid, w->rule, w->reason, w->index, cfg->generation);
	return 1;
}

SEC("lsm/netlink_send")
int BPF_PROG(enforce_netlink_send, struct sock *sk, struct sk_buff *skb, int ret)
{
	struct enf_walk w = {};

	if (ret)
		return ret; /* an earlier LSM refused: keep its answer */
	if (sk->sk_protocol != NETLINK_ROUTE)
		return 0;
	w.netns = sk->__sk_common.skc_net.net->ns.inum;
	w.portid = BPF_CORE_READ((struct netlink_sock *)sk, portid);
	/* addresses read as scalars: the walk reads them with probe_read */
	w.src = (__u64)BPF_CORE_READ(skb, data);
	w.len = BPF_CORE_READ(skb, len);
	return enf_judge_skb(&w, BPF_CORE_READ(skb, data_len) != 0) ? -EPERM : 0;
}

/* The socket behind a route ioctl's file: its family and namespace, or
 * nonzero for a file that is no socket. */
static __always_inline int enf_ioctl_sock(struct file *file, __u16 *family, __u32 *netns)
{
	struct socket *sock;

	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return -1;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return -1;
	*family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	*netns = BPF_CORE_READ(sock, sk, __sk_common.skc_net.net, ns.inum);
	return 0;
}

/* The common start of the ioctl hooks: a route ioctl on a socket of an
 * enforced namespace, counted as checked. Returns the config of the set
 * in force, NULL when there is nothing to judge. */
static __always_inline struct enf_config *enf_ioctl_begin(struct file *file, unsigned int cmd, struct enf_walk *w,
							  __u16 *family)
{
	struct enf_config *cfg;

	if (cmd != SIOCADDRT && cmd != SIOCDELRT)
		return NULL;
	if (enf_ioctl_sock(file, family, &w->netns))
		return NULL;
	w->set = enf_current_set();
	if (!enf_netns_enforced(w->netns, w->set))
		return NULL;
	cfg = bpf_map_lookup_elem(&enf_configs, &w->set);
	if (cfg)
		enf_count(ENF_S_CHECKED);
	return cfg;
}

/* Whether the current task makes a 32-bit (compat) syscall. Before 6.8
 * those ioctls come through lsm/file_ioctl too, with 32-bit layouts. */
static __always_inline int enf_task_compat(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

#if defined(__TARGET_ARCH_x86)
	return (BPF_CORE_READ(t, thread_info.status) & 0x0002 /* TS_COMPAT */) != 0;
#elif defined(__TARGET_ARCH_arm64)
	return (BPF_CORE_READ(t, thread_info.flags) & (1UL << 22) /* TIF_32BIT */) != 0;
#else
	return 0;
#endif
}

/* The route ioctls (struct rtentry, struct in6_rtmsg); those of 32-bit
 * tasks are refused unparsed (fail closed) for actors not allowed. */
SEC("lsm/file_ioctl")
int BPF_PROG(enforce_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	struct enf_facts f = {};
	struct enf_walk w = {};
	struct enf_scratch *s;
	struct enf_config *cfg;
	struct rt_event *e;
	__u32 rule = ENF_NO_RULE, reason = 0;
	__u16 family = 0;

	if (ret)
		return ret;
	cfg = enf_ioctl_begin(file, cmd, &w, &family);
	s = enf_scratch_get();
	if (!cfg || !s)
		return 0;
	e = &s->v.ev;
	__builtin_memset(e, 0, sizeof(*e));
	e->op = cmd == SIOCADDRT ? RT_OP_ADD : RT_OP_DELETE;
	e->object = RT_OBJ_ROUTE;
	e->family = family == AF_INET6 ? AF_INET6 : AF_INET;
	if (enf_task_compat())
		enf_refuse(&w, ENF_NO_RULE, ENF_R_COMPAT);
	else if (rtnl_parse_route_ioctl(e, family, (const void *)arg))
		enf_refuse(&w, ENF_NO_RULE, ENF_R_READ);
	else if (enf_match(e, &f, w.netns, w.set, cfg, &rule, &reason))
		enf_refuse(&w, rule, reason);
	if (!w.refused)
		return 0;
	enf_emit(s, RT_ORIGIN_IOCTL, w.netns, 0, w.rule, w.reason, 0, cfg->generation);
	return -EPERM;
}

/* 32-bit tasks on a 64-bit kernel reach the route ioctls through
 * security_file_ioctl_compat (6.8 on), with 32-bit layouts of the
 * argument: refused unparsed (fail closed) in enforced namespaces for
 * actors not allowed. User space attaches it where the hook exists. */
SEC("lsm/file_ioctl_compat")
int BPF_PROG(enforce_file_ioctl_compat, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	struct enf_walk w = {};
	struct enf_scratch *s;
	struct enf_config *cfg;
	__u16 family = 0;

	if (ret)
		return ret;
	cfg = enf_ioctl_begin(file, cmd, &w, &family);
	s = enf_scratch_get();
	if (!cfg || !s)
		return 0;
	enf_refuse(&w, ENF_NO_RULE, ENF_R_COMPAT);
	if (!w.refused)
		return 0;
	__builtin_memset(&s->v.ev, 0, sizeof(s->v.ev));
	s->v.ev.object = RT_OBJ_ROUTE;
	s->v.ev.op = cmd == SIOCADDRT ? RT_OP_ADD : RT_OP_DELETE;
	s->v.ev.family = family == AF_INET6 ? AF_INET6 : AF_INET;
	enf_emit(s, RT_ORIGIN_IOCTL, w.netns, 0, w.rule, w.reason, 0, cfg->generation);
	return -EPERM;
}

/* The walk and matcher over enf_test_input's bytes, for the tests: result
 * in enf_test_result, verdicts to enf_events as the LSM writes them.
 * Returns 1 (socket filters return unsigned). */
SEC("socket")
int enforce_test(struct __sk_buff *skb)
{
	struct enf_test_result r = {};
	struct enf_walk w = {};
	struct enf_test_input *in;
	struct enf_config *cfg;
	__u32 zero = 0;
	void *data;

	in = bpf_map_lookup_elem(&enf_test_in, &zero);
	if (!in)
		return 0;
	/* The data's address as a scalar, like skb->data in the LSM: read
	 * through the helper, the verifier no longer tracks it as a map
	 * pointer whose every offset it would have to bound. */
	data = in->data;
	if (bpf_probe_read_kernel(&w.src, sizeof(w.src), &data))
		return 0;
	w.len = in->len < ENF_TEST_MAX ? in->len : ENF_TEST_MAX;
	w.netns = in->netns;
	r.refused = enf_judge_skb(&w, 0);
	r.rule = w.rule;
	r.reason = w.reason;
	r.msg_index = w.index;
	r.msgs = w.index + (w.refused || w.allowed == 1 ? 1 : 0);
	cfg = bpf_map_lookup_elem(&enf_configs, &w.set);
	if (cfg)
		r.generation = cfg->generation;
	bpf_map_update_elem(&enf_test_out, &zero, &r, BPF_ANY);
	return 1;
}
