/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The record every routetrace BPF program writes to the ring buffer.
 *
 * One layout for all attach tiers, so that user space has one decoder and
 * every sink consumes the same event model. Fields are ordered by size and
 * padded explicitly: the object is compiled with -Wpadded and the Go type is
 * generated from this struct's BTF (bpf2go -type rt_event).
 */
#ifndef ROUTETRACE_H
#define ROUTETRACE_H

#define RT_COMM_LEN 16
#define RT_IFNAME_LEN 16

/* What a record describes. */
enum rt_kind {
	RT_KIND_CHANGE = 1,  /* a change seen at a FIB hook, with its result */
	RT_KIND_REQUEST = 2, /* an rtnetlink or ioctl request seen at the syscall */
	RT_KIND_ACK = 3,     /* an NLMSG_ERROR answer read by the requester */
	RT_KIND_ORIGIN = 4,  /* the ioctl that made a notification with no requester
			      * (portid 0): the actor, nlmsg_type, seq, and in count
			      * a hash of the notification (see nlorigin.bpf.c) */
	RT_KIND_PROC = 5,    /* a struct rt_proc, not an rt_event: who a process
			      * is (argv, exe, cgroup), sent before the first
			      * record that carries its proc_cookie */
};

/* A REQUEST or ACK record with RT_F_TRUNCATED and no object (RT_OBJ_NONE)
 * says the capture stopped at one of its limits: the messages after it were
 * not captured one by one. User space counts it; nothing is dropped silently. */
#define RT_OBJ_NONE 0

enum rt_op {
	RT_OP_ADD = 1,
	RT_OP_REPLACE = 2,
	RT_OP_DELETE = 3,
	RT_OP_FLUSH = 4, /* a bulk removal reported as one record with a count */
};

enum rt_object {
	RT_OBJ_ROUTE = 1,
	RT_OBJ_RULE = 2,
	RT_OBJ_NEXTHOP = 3,
	RT_OBJ_ADDR = 4, /* only as the cause of kernel-internal removals */
	RT_OBJ_LINK = 5, /* likewise */
};

enum rt_origin {
	RT_ORIGIN_NETLINK = 1,
	RT_ORIGIN_IOCTL = 2,
	RT_ORIGIN_KERNEL = 3,
};

enum rt_attach {
	RT_ATTACH_FENTRY = 1,
	RT_ATTACH_KPROBE = 2,
	RT_ATTACH_TRACEPOINT = 3,
};

/* The kernel path that drove a kernel-internal change. */
enum rt_path {
	RT_PATH_NONE = 0,
	RT_PATH_FIB_TABLE_FLUSH = 1,
	RT_PATH_FIB_NETDEV_EVENT = 2,   /* link down/unregister */
	RT_PATH_FIB_INETADDR_EVENT = 3, /* IPv4 address removal */
	RT_PATH_FIB6_RUN_GC = 4,
	RT_PATH_ADDRCONF_NOTIFY = 5,    /* IPv6 link down/unregister */
	RT_PATH_REMOVE_NEXTHOP = 6,
	RT_PATH_IP_RT_IOCTL = 7,
	RT_PATH_IPV6_ROUTE_IOCTL = 8,
};

/* rt_event.flags */
#define RT_F_KTHREAD     (1 << 0) /* the current task is a kernel thread */
#define RT_F_TRUNCATED   (1 << 1) /* the request was longer than we copy */
#define RT_F_LINK_DOWN   (1 << 2) /* a link request that clears IFF_UP */
#define RT_F_IN_SOFTIRQ  (1 << 3) /* ran from a timer: current is not the actor */
#define RT_F_MULTIPATH   (1 << 4) /* the route has RTA_MULTIPATH nexthops */

struct rt_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns() */
	__u64 cgroup_id; /* cgroup v2 id of the actor */

	__u32 pid;  /* thread id of the actor */
	__u32 tgid; /* process id of the actor */
	__u32 ppid; /* process id of the actor's parent */
	__u32 uid;
	__u32 actor_netns; /* netns inode of the actor */
	__u32 netns;       /* netns inode the change applies to */
	__u32 portid;      /* requester's netlink portid, 0 for ioctl/kernel */
	__u32 seq;         /* request sequence number */
	__s32 err;         /* 0 or -errno (changes and acks) */
	__u32 count;       /* routes removed (flush records) */

	__u8 kind;   /* enum rt_kind */
	__u8 op;     /* enum rt_op */
	__u8 object; /* enum rt_object */
	__u8 family; /* AF_INET, AF_INET6, ... */
	__u8 origin; /* enum rt_origin */
	__u8 attach; /* enum rt_attach */
	__u16 path;  /* enum rt_path */
	__u16 nlmsg_type;
	__u16 nlmsg_flags;
	__u16 flags; /* RT_F_* */
	__u8 dst_len;
	__u8 src_len;

	__u32 table;
	__u32 oif;      /* route output ifindex, link/addr ifindex */
	__u32 priority; /* route metric or rule priority */
	__u32 nh_id;    /* nexthop object id */
	__u32 fwmark;
	__u32 fwmask;
	__u32 goto_target; /* rule FRA_GOTO target */

	__u8 protocol;
	__u8 scope;
	__u8 type;        /* route type (RTN_*) */
	__u8 tos;         /* tos or dscp */
	__u8 rule_action; /* FR_ACT_* */
	__u8 gw_family;
	__u8 pad[2];

	__u8 dst[16];
	__u8 src[16];
	__u8 gw[16];
	char iifname[RT_IFNAME_LEN]; /* rule selectors */
	char oifname[RT_IFNAME_LEN];
	char comm[RT_COMM_LEN];
	char pcomm[RT_COMM_LEN];
	__u32 reserved; /* flush records: how many routes were reported one by one */

	/* Kernel-internal changes in tiers 1-2: what the context hook that
	 * set `path` was told (the link, or the IPv4 address removed). */
	__u32 cause_ifindex;
	__u8 cause_addr[4];
	__u8 cause_prefixlen;
	__u8 cause_op; /* enum rt_op: delete (unregistered, address) or replace (down) */
	__u8 pad2[6];

	/* The struct rt_proc naming the actor's process (0: none, e.g. a
	 * kernel thread or softirq). */
	__u64 proc_cookie;
	/* Tiers 1-2: the name of the route's (first nexthop's) device, read
	 * from its net_device at the hook, so that a route in a namespace the
	 * tracer does not follow, or on a link already gone, has its dev.
	 * Not the rule selector oifname above. "" when not known. */
	char oif_name[RT_IFNAME_LEN];
};

#define RT_PROC_ARGV_LEN 1024
#define RT_PROC_EXE_LEN 256
#define RT_PROC_CGROUP_LEN 512
#define RT_PROC_MAX_DEPTH 16 /* path components walked (exe, cgroup), cgroup links */

/* rt_proc.flags */
#define RT_PROC_F_CGROUP2      (1 << 0) /* the chosen cgroup is on the default (v2) hierarchy */
#define RT_PROC_F_ARGV_TRUNC   (1 << 1) /* argv longer than RT_PROC_ARGV_LEN, or unreadable */
#define RT_PROC_F_EXE_TRUNC    (1 << 2) /* exe: more components or bytes than kept (leaf end kept) */
#define RT_PROC_F_CGROUP_TRUNC (1 << 3) /* cgroup path: likewise (leaf end kept) */

/*
 * RT_KIND_PROC: who a process is, recorded by the kernel the first time it
 * acts (per process identity: tgid, exec, css_set), so that a process that
 * exits a millisecond later, and whose cgroup is removed, is still named.
 * Every later record of that process carries `cookie` in proc_cookie.
 * `kind` is at rt_event's offset: user space reads that byte to tell the
 * two records apart (static_assert below).
 */
struct rt_proc {
	__u64 ts_ns;
	__u64 cookie;
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__u32 uid;
	__u64 cgroup_id;  /* kernfs id of the chosen cgroup (cgrp->kn->id) */
	__u64 cgroup2_id; /* bpf_get_current_cgroup_id(): the default hierarchy's */
	__u32 hierarchy;  /* cgrp->root->hierarchy_id of the chosen cgroup */
	__u32 cgroup_level;
	__u8 kind;        /* RT_KIND_PROC */
	__u8 flags;       /* RT_PROC_F_* */
	__u16 argv_len;   /* bytes of argv: NUL-separated arguments */
	__u16 exe_len;
	__u16 cgroup_len;
	char argv[RT_PROC_ARGV_LEN];
	char exe[RT_PROC_EXE_LEN];       /* "/usr/bin/ip", from the filesystem's root */
	char cgroup[RT_PROC_CGROUP_LEN]; /* "/system.slice/x.service", from the hierarchy's root */
};

_Static_assert(__builtin_offsetof(struct rt_proc, kind) == __builtin_offsetof(struct rt_event, kind),
	       "rt_proc.kind must be where rt_event.kind is");

#endif
