/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The enforcer's policy matcher: is a parsed request (a struct rt_event from
 * rtnl_parse.h) a counted change of protected state, and is its actor
 * allowed? Shared by the LSM programs and the test-runnable program of
 * enforce.bpf.c; enforce/reference.go is the same logic in Go, and the
 * tests require the two to agree.
 *
 * Two complete policies live in the maps at once: every key (or array
 * index) carries a set, 0 or 1, and enf_current names the set in force.
 * User space writes the set not in force, then flips enf_current with one
 * word write: a request is judged wholly by one policy, never by a half
 * written one or by none. One request (one skb, one ioctl) reads
 * enf_current once.
 *
 * Arrays hold rule id + 1 where a slot may be empty (0: not protected);
 * hash maps hold the rule id itself (present: protected). A rule id indexes
 * the []string of rule names user space keeps.
 */
#ifndef ROUTETRACE_POLICY_H
#define ROUTETRACE_POLICY_H

#include "common.h"

#define ENF_SETS 2
#define ENF_MAX_RULES 32    /* rule selectors per set */
#define ENF_MAX_NEXTHOPS 32 /* nexthop selectors per set */
#define ENF_PROTOCOLS 256
#define ENF_CGROUP_DEPTH 16 /* the actor's cgroup and its ancestors looked up */
#define ENF_NO_RULE 0xffffffff
#define RT_TABLE_MAIN 254
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* Why a request was refused (enf_verdict.reason). ENF_R_PROTECTED is a
 * match; every other reason is fail-closed: the request could touch
 * protected state and could not be judged whole. */
enum enf_reason {
	ENF_R_PROTECTED = 0,
	ENF_R_BADLEN = 1,    /* nlmsg_len below the header or past the skb */
	ENF_R_SHORT = 2,     /* shorter than its family header */
	ENF_R_BADATTR = 3,   /* an attribute length below 4 or past the message */
	ENF_R_READ = 4,      /* a read of the request failed */
	ENF_R_BOUND = 5,     /* a loop bound was hit before the end */
	ENF_R_NOPRIO = 6,    /* rule delete without FRA_PRIORITY while rules are protected */
	ENF_R_BADNH = 7,     /* a malformed rtnexthop in RTA_MULTIPATH */
	ENF_R_LINKNAME = 8,  /* link delete/down by name where interfaces are protected */
	ENF_R_NONLINEAR = 9, /* an skb whose data is not in one piece */
	ENF_R_NOSCRATCH = 10,
	ENF_R_COMPAT = 11,   /* a 32-bit task's route ioctl: not parsed */
};

/* Settings of one set. */
struct enf_config {
	__u32 generation; /* user space's policy generation, echoed in verdicts */
	__u32 n_rules;    /* rule selectors in use */
	__u32 n_nexthops; /* nexthop selectors in use */
	__u8 replace;       /* replacing protected state counts */
	__u8 more_specific; /* adding a route inside a protected prefix counts */
	__u8 pad[2];
};

struct enf_lpm4_key {
	__u32 prefixlen; /* 8 (the set byte) + the prefix length */
	__u8 set;
	__u8 addr[4];
	__u8 pad[3];
};

struct enf_lpm6_key {
	__u32 prefixlen;
	__u8 set;
	__u8 addr[16];
	__u8 pad[3];
};

struct enf_prefix {
	__u32 rule;
	__u32 len; /* the protected prefix's length: an add counts only when longer */
};

/* A protected route that exists: deletes carry neither device nor
 * protocol, so they are looked up by what they do carry. dst masked to
 * dst_len, table 0 stored as main. */
struct enf_route_key {
	__u32 netns;
	__u32 table;
	__u8 set;
	__u8 family;
	__u8 dst_len;
	__u8 pad;
	__u8 dst[16];
};

struct enf_table_key {
	__u32 table;
	__u32 set;
};

/* A protected interface. ifindex 0 marks "this namespace has protected
 * interfaces": a link request naming its link only by name is then
 * refused (ENF_R_LINKNAME), since BPF cannot resolve the name. */
struct enf_iface_key {
	__u32 netns;
	__u32 ifindex;
	__u32 set;
};

struct enf_netns_key {
	__u32 netns;
	__u32 set;
};

struct enf_cgroup_key {
	__u64 id;
	__u64 set;
};

struct enf_comm_key {
	char comm[RT_COMM_LEN];
	__u32 set;
};

struct enf_exe_key {
	__u64 ino;
	__u32 dev; /* the kernel's s_dev: major << 20 | minor */
	__u32 set;
};

struct enf_rule_sel {
	__u32 prio_min, prio_max; /* inclusive, when has_prio */
	__u32 table;              /* 0: any */
	__u32 rule;
	__u8 family;              /* 0: both */
	__u8 has_prio;
	__u8 pad[2];
};

struct enf_nh_sel {
	__u32 id_min, id_max; /* inclusive; 0, 0: any */
	__u32 rule;
	__u8 groups; /* only groups: a replace without NHA_GROUP does not match */
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} enf_current SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_SETS);
	__type(key, __u32);
	__type(value, struct enf_config);
} enf_configs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_lpm4_key);
	__type(value, struct enf_prefix);
} enf_prefix4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_lpm6_key);
	__type(value, struct enf_prefix);
} enf_prefix6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 17);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_route_key);
	__type(value, __u32);
} enf_routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct enf_table_key);
	__type(value, __u32);
} enf_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_iface_key);
	__type(value, __u32);
} enf_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_SETS * ENF_PROTOCOLS);
	__type(key, __u32);
	__type(value, __u32); /* rule id + 1 */
} enf_protocols SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_SETS * ENF_MAX_RULES);
	__type(key, __u32);
	__type(value, struct enf_rule_sel);
} enf_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_SETS * ENF_MAX_NEXTHOPS);
	__type(key, __u32);
	__type(value, struct enf_nh_sel);
} enf_nexthops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct enf_netns_key);
	__type(value, __u8);
} enf_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, struct enf_cgroup_key);
	__type(value, __u8);
} enf_allow_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct enf_comm_key);
	__type(value, __u8);
} enf_allow_comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct enf_exe_key);
	__type(value, __u8);
} enf_allow_exes SEC(".maps");

/* What the attribute walk learnt beyond the rt_event. */
struct enf_facts {
	__u32 mp_rule;  /* rule id + 1 of a protected RTA_MULTIPATH ifindex, 0: none */
	__u8 has_prio;  /* FRA_PRIORITY present */
	__u8 has_name;  /* IFLA_IFNAME or IFLA_ALT_IFNAME present */
	__u8 pad[2];
};

/* The set in force; the config is looked up per request. */
static __always_inline __u32 enf_current_set(void)
{
	__u32 zero = 0, *s = bpf_map_lookup_elem(&enf_current, &zero);

	return s ? (*s & 1) : 0;
}

static __always_inline int enf_netns_enforced(__u32 netns, __u32 set)
{
	struct enf_netns_key k = {.netns = netns, .set = set};

	return bpf_map_lookup_elem(&enf_netns, &k) != NULL;
}

/* The rule id + 1 of a protected interface, 0 when it is not. */
static __always_inline __u32 enf_iface_rule(__u32 netns, __u32 ifindex, __u32 set)
{
	struct enf_iface_key k = {.netns = netns, .ifindex = ifindex, .set = set};
	__u32 *r = bpf_map_lookup_elem(&enf_ifaces, &k);

	return r ? *r + 1 : 0;
}

/* Clears the bits of a route key's dst past its length: the kernel ignores
 * host bits of an IPv6 delete (fib6_locate compares prefixes), so the
 * lookup must too. On two big-endian halves: no loop, no per-byte branch. */
static __always_inline void enf_mask(__u8 *dst, __u32 len)
{
	__u64 hi, lo;

	__builtin_memcpy(&hi, dst, 8);
	__builtin_memcpy(&lo, dst + 8, 8);
	hi = bpf_be64_to_cpu(hi);
	lo = bpf_be64_to_cpu(lo);
	if (len == 0)
		hi = 0;
	else if (len < 64)
		hi &= ~0ULL << (64 - len);
	if (len <= 64)
		lo = 0;
	else if (len < 128)
		lo &= ~0ULL << (128 - len);
	hi = bpf_cpu_to_be64(hi);
	lo = bpf_cpu_to_be64(lo);
	__builtin_memcpy(dst, &hi, 8);
	__builtin_memcpy(dst + 8, &lo, 8);
}

/* The protected prefix a route's dst/len lies in, or NULL. */
static __always_inline struct enf_prefix *enf_lookup_prefix(const struct rt_event *e, __u32 set)
{
	if (e->family == AF_INET) {
		struct enf_lpm4_key k = {.set = set};

		k.prefixlen = 8 + (e->dst_len > 32 ? 32 : e->dst_len);
		__builtin_memcpy(k.addr, e->dst, 4);
		return bpf_map_lookup_elem(&enf_prefix4, &k);
	}
	if (e->family == AF_INET6) {
		struct enf_lpm6_key k = {.set = set};

		k.prefixlen = 8 + (e->dst_len > 128 ? 128 : e->dst_len);
		__builtin_memcpy(k.addr, e->dst, 16);
		return bpf_map_lookup_elem(&enf_prefix6, &k);
	}
	return NULL;
}

#define ENF_HIT(id) ({ *rule = (id); *reason = ENF_R_PROTECTED; return 1; })
#define ENF_FAIL(id, why) ({ *rule = (id); *reason = (why); return 1; })

static __always_inline int enf_match_route(const struct rt_event *e, const struct enf_facts *f, __u32 netns,
					   __u32 set, const struct enf_config *cfg, __u32 *rule, __u32 *reason)
{
	struct enf_route_key rk = {.netns = netns, .set = set, .family = e->family, .dst_len = e->dst_len};
	struct enf_table_key tk = {.set = set};
	struct enf_prefix *p;
	__u32 *r, id;

	if (e->op == RT_OP_REPLACE && !cfg->replace)
		return 0;
	if (e->op == RT_OP_ADD && !cfg->more_specific)
		return 0;
	p = enf_lookup_prefix(e, set);
	if (p && (e->op != RT_OP_ADD || e->dst_len > p->len))
		ENF_HIT(p->rule);
	if (e->op == RT_OP_ADD)
		return 0; /* an add counts only inside a protected prefix */

	rk.table = e->table ? e->table : RT_TABLE_MAIN;
	__builtin_memcpy(rk.dst, e->dst, 16);
	enf_mask(rk.dst, e->dst_len);
	r = bpf_map_lookup_elem(&enf_routes, &rk);
	if (r)
		ENF_HIT(*r);
	tk.table = rk.table;
	r = bpf_map_lookup_elem(&enf_tables, &tk);
	if (r)
		ENF_HIT(*r);
	if (e->oif && (id = enf_iface_rule(netns, e->oif, set)))
		ENF_HIT(id - 1);
	if (f->mp_rule)
		ENF_HIT(f->mp_rule - 1);
	if (e->op == RT_OP_REPLACE) {
		__u32 k = set * ENF_PROTOCOLS + e->protocol;

		r = bpf_map_lookup_elem(&enf_protocols, &k);
		if (r && *r)
			ENF_HIT(*r - 1);
	}
	return 0;
}

/* The selector loops run as bpf_loop callbacks over this. */
struct enf_sel_ctx {
	const struct rt_event *e;
	__u32 set;
	__u32 n;
	__u32 rule;
	__u32 reason;
	__u32 hit;
	__u8 has_prio;
	__u8 pad[3];
};

static long enf_rule_step(__u64 i, void *ctx)
{
	struct enf_sel_ctx *c = ctx;
	const struct rt_event *e = c->e;
	__u32 k = c->set * ENF_MAX_RULES + i;
	struct enf_rule_sel *s;

	if (i >= c->n)
		return 1;
	s = bpf_map_lookup_elem(&enf_rules, &k);
	if (!s)
		return 1;
	if (s->family && s->family != e->family)
		return 0;
	/* a request without a table deletes from any table */
	if (s->table && e->table && s->table != e->table)
		return 0;
	c->rule = s->rule;
	c->reason = ENF_R_PROTECTED;
	if (!s->has_prio || (c->has_prio && e->priority >= s->prio_min && e->priority <= s->prio_max)) {
		c->hit = 1;
		return 1;
	}
	if (!c->has_prio) {
		c->reason = ENF_R_NOPRIO;
		c->hit = 1;
		return 1;
	}
	return 0;
}

static __always_inline int enf_match_rule(const struct rt_event *e, const struct enf_facts *f, __u32 set,
					  const struct enf_config *cfg, __u32 *rule, __u32 *reason)
{
	struct enf_sel_ctx c = {.e = e, .set = set, .n = cfg->n_rules, .has_prio = f->has_prio};

	if (e->op == RT_OP_ADD || (e->op == RT_OP_REPLACE && !cfg->replace))
		return 0;
	bpf_loop(ENF_MAX_RULES, enf_rule_step, &c, 0);
	if (c.hit)
		ENF_FAIL(c.rule, c.reason);
	return 0;
}

static long enf_nh_step(__u64 i, void *ctx)
{
	struct enf_sel_ctx *c = ctx;
	const struct rt_event *e = c->e;
	__u32 k = c->set * ENF_MAX_NEXTHOPS + i;
	struct enf_nh_sel *s;

	if (i >= c->n)
		return 1;
	s = bpf_map_lookup_elem(&enf_nexthops, &k);
	if (!s)
		return 1;
	if ((s->id_min || s->id_max) && (e->nh_id < s->id_min || e->nh_id > s->id_max))
		return 0;
	/* a delete does not say whether its id is a group: any counts */
	if (e->op == RT_OP_REPLACE && s->groups && !(e->flags & RT_F_MULTIPATH))
		return 0;
	c->rule = s->rule;
	c->hit = 1;
	return 1;
}

static __always_inline int enf_match_nexthop(const struct rt_event *e, __u32 set, const struct enf_config *cfg,
					     __u32 *rule, __u32 *reason)
{
	struct enf_sel_ctx c = {.e = e, .set = set, .n = cfg->n_nexthops};

	if (e->op == RT_OP_ADD || (e->op == RT_OP_REPLACE && !cfg->replace))
		return 0;
	bpf_loop(ENF_MAX_NEXTHOPS, enf_nh_step, &c, 0);
	if (c.hit)
		ENF_HIT(c.rule);
	return 0;
}

/* Link deletes, links set down and address removals on a protected
 * interface make the kernel flush its routes itself, which no hook can
 * refuse afterwards: so their cause is refused. */
static __always_inline int enf_match_link(const struct rt_event *e, const struct enf_facts *f, __u32 netns,
					  __u32 set, __u32 *rule, __u32 *reason)
{
	__u32 id;

	if (e->object == RT_OBJ_LINK && e->nlmsg_type != 17 /* RTM_DELLINK */ && !(e->flags & RT_F_LINK_DOWN))
		return 0;
	if (e->oif) {
		id = enf_iface_rule(netns, e->oif, set);
		if (id)
			ENF_HIT(id - 1);
		return 0;
	}
	if (e->object == RT_OBJ_LINK && f->has_name && (id = enf_iface_rule(netns, 0, set)))
		ENF_FAIL(id - 1, ENF_R_LINKNAME);
	return 0;
}

/* Whether the request e, in namespace netns, is a counted change of
 * protected state under set: 1 with *rule and *reason set, else 0. */
static __always_inline int enf_match(const struct rt_event *e, const struct enf_facts *f, __u32 netns, __u32 set,
				     const struct enf_config *cfg, __u32 *rule, __u32 *reason)
{
	switch (e->object) {
	case RT_OBJ_ROUTE:
		return enf_match_route(e, f, netns, set, cfg, rule, reason);
	case RT_OBJ_RULE:
		return enf_match_rule(e, f, set, cfg, rule, reason);
	case RT_OBJ_NEXTHOP:
		return enf_match_nexthop(e, set, cfg, rule, reason);
	case RT_OBJ_ADDR:
	case RT_OBJ_LINK:
		return enf_match_link(e, f, netns, set, rule, reason);
	}
	return 0;
}

/* Whether the current task may change protected state: its comm, its
 * executable (device and inode of mm->exe_file), or its cgroup v2 or one
 * of ENF_CGROUP_DEPTH - 1 ancestors is allowed. Read from the task with
 * CO-RE, so that the socket-filter test program runs the same code. */
static __always_inline int enf_actor_allowed(__u32 set)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct enf_comm_key ck = {.set = set};
	struct enf_exe_key xk = {.set = set};
	struct enf_cgroup_key gk = {.set = set};
	struct kernfs_node *kn;
	struct inode *ino;
	int i;

	BPF_CORE_READ_STR_INTO(&ck.comm, task, comm);
	if (bpf_map_lookup_elem(&enf_allow_comms, &ck))
		return 1;
	ino = BPF_CORE_READ(task, mm, exe_file, f_inode);
	if (ino) {
		xk.ino = BPF_CORE_READ(ino, i_ino);
		xk.dev = BPF_CORE_READ(ino, i_sb, s_dev);
		if (bpf_map_lookup_elem(&enf_allow_exes, &xk))
			return 1;
	}
	kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	for (i = 0; i < ENF_CGROUP_DEPTH && kn; i++) {
		gk.id = BPF_CORE_READ(kn, id);
		if (bpf_map_lookup_elem(&enf_allow_cgroups, &gk))
			return 1;
		kn = rt_kn_parent(kn);
	}
	return 0;
}

#endif
