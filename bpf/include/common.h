/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps and helpers shared by every routetrace object. */
#ifndef ROUTETRACE_COMMON_H
#define ROUTETRACE_COMMON_H

/* -Wpadded guards our own record layouts, not the kernel's. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#pragma clang diagnostic pop
#include "routetrace.h"

/* vmlinux.h comes from an x86-64 kernel; CO-RE relocates kernel structs on
 * any architecture, but kprobe register access on arm64 uses this user ABI
 * struct, which only arm64's headers define. */
#if defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#endif

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef AF_NETLINK
#define AF_NETLINK 16
#endif
#define NETLINK_ROUTE 0
#define PF_KTHREAD 0x00200000

/* Size of the per-CPU copy of one rtnetlink message. A power of two: offsets
 * are masked with RT_SCRATCH_MASK, and the buffer has as much slack again so
 * that a masked offset plus a 16-byte read always stays inside it. */
#define RT_SCRATCH 512
#define RT_SCRATCH_MASK (RT_SCRATCH - 1)

/* Loaded once from user space, never written: settings known at load time. */
const volatile __u32 self_tgid = 0; /* routetrace itself: its own requests are not traced */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* The reader drains it every 10 ms and is woken each 256 KiB: 16 MiB
	 * holds a burst of some 60,000 records (a flush of 100,000 routes in
	 * tier 3 outran the reader of a 4 MiB ring by 15,000). */
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* Records the ring buffer had no room for: counted, never silent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* A process as it is now: any of these changes makes a new record. */
struct rt_proc_key {
	__u64 start_time; /* the group leader's: when the process started */
	__u64 exec_id;    /* task->self_exec_id: each execve bumps it (new argv, exe) */
	__u64 cset;       /* task->cgroups: moving to another cgroup changes it */
	__u32 tgid;
	__u32 pad;
};

/* Per-CPU working space: a copy of one request, and the event being built. */
struct rt_heap {
	__u8 buf[RT_SCRATCH * 2];
	struct rt_event ev;
	/* The actor's process identity (proc.h), kept here rather than on
	 * the stack of the capture's nested bpf_loop callbacks. */
	struct rt_proc_key proc_key;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rt_heap);
} heap SEC(".maps");

/* Forces bpf2go to emit the Go types. */
const struct rt_event *unused_rt_event __attribute__((unused));
const struct rt_proc *unused_rt_proc __attribute__((unused));

static __always_inline struct rt_heap *rt_heap(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&heap, &zero);
}

static __always_inline void rt_count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		*n += 1;
}

/* Waking the reader on every record costs the changing task an irq_work
 * and a wakeup, several microseconds: the reader instead polls every few
 * milliseconds and is woken only when a burst has filled a good part of the
 * buffer. */
#define RT_WAKEUP_BYTES (256 << 10)
#define RT_THROTTLE_BYTES (4 << 20)

/* Writes one record (an rt_event or an rt_proc) to the ring, or counts it
 * lost. Returns 0 when written. */
static __always_inline long rt_output(void *data, __u64 size)
{
	__u64 backlog = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;

	/* Once each time the backlog crosses a multiple of RT_WAKEUP_BYTES,
	 * not on every record past it: a reader already woken needs no more,
	 * and a flush that outran the reader paid a wakeup per route (BPF
	 * 3-4 us a flushed route instead of 0.6). Past RT_THROTTLE_BYTES the
	 * reader is falling behind: then every record wakes it, and the
	 * wakeup's cost slows the task that outruns it, rather than the ring
	 * filling up and records being lost. */
	if (backlog >= RT_THROTTLE_BYTES ||
	    backlog / RT_WAKEUP_BYTES != (backlog + size + 8) / RT_WAKEUP_BYTES)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(&events, data, size, flags) != 0) {
		rt_count_lost();
		return -1;
	}
	return 0;
}

static __always_inline void rt_emit(struct rt_event *e)
{
	rt_output(e, sizeof(*e));
}

static __always_inline __u32 rt_net_inum(struct net *net)
{
	return BPF_CORE_READ(net, ns.inum);
}

#include "proc.h"

/* Who is running: everything the kernel knows now, since a short-lived
 * process is gone before user space could look it up. Without the
 * process record: for programs that may run in softirq (fib6_add,
 * fib6_del), which decide afterwards whether the task is the actor. */
static __always_inline void rt_fill_actor_noproc(struct rt_event *e)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *parent;
	__u64 id = bpf_get_current_pid_tgid();

	e->ts_ns = bpf_ktime_get_ns();
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	parent = BPF_CORE_READ(task, real_parent);
	e->ppid = BPF_CORE_READ(parent, tgid);
	BPF_CORE_READ_STR_INTO(&e->pcomm, parent, comm);
	e->actor_netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		e->flags |= RT_F_KTHREAD;
}

/* The actor, and the cookie of its process record (written to the ring
 * now if this process identity has none yet: before the record being
 * built, which is reserved later). Task context only. */
static __always_inline void rt_fill_actor(struct rt_event *e)
{
	rt_fill_actor_noproc(e);
	if (!(e->flags & RT_F_KTHREAD))
		e->proc_cookie = rt_proc_cookie((struct task_struct *)bpf_get_current_task(), e->tgid);
}

/* The actor's part of an event, kept to stamp many events of one syscall
 * (a batch of requests) without asking the kernel again for each. */
struct rt_actor {
	__u64 cgroup_id;
	__u64 proc_cookie;
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__u32 uid;
	__u32 actor_netns;
	__u16 flags;
	__u16 pad;
	char comm[RT_COMM_LEN];
	char pcomm[RT_COMM_LEN];
};

static __always_inline void rt_save_actor(const struct rt_event *e, struct rt_actor *a)
{
	a->cgroup_id = e->cgroup_id;
	a->proc_cookie = e->proc_cookie;
	a->pid = e->pid;
	a->tgid = e->tgid;
	a->ppid = e->ppid;
	a->uid = e->uid;
	a->actor_netns = e->actor_netns;
	a->flags = e->flags;
	__builtin_memcpy(a->comm, e->comm, RT_COMM_LEN);
	__builtin_memcpy(a->pcomm, e->pcomm, RT_COMM_LEN);
}

/* A fresh event in the per-CPU heap, stamped with a saved actor. */
static __always_inline struct rt_event *rt_new_event_as(struct rt_heap *h, __u8 kind, __u8 attach,
							const struct rt_actor *a)
{
	struct rt_event *e = &h->ev;

	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->attach = attach;
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = a->cgroup_id;
	e->proc_cookie = a->proc_cookie;
	e->pid = a->pid;
	e->tgid = a->tgid;
	e->ppid = a->ppid;
	e->uid = a->uid;
	e->actor_netns = a->actor_netns;
	e->flags = a->flags;
	__builtin_memcpy(e->comm, a->comm, RT_COMM_LEN);
	__builtin_memcpy(e->pcomm, a->pcomm, RT_COMM_LEN);
	return e;
}

/* A fresh event in the per-CPU heap, actor filled but no process record
 * looked up (proc_cookie 0): for an actor saved before it is known to
 * have made a request worth one. */
static __always_inline struct rt_event *rt_new_event_noproc(struct rt_heap *h, __u8 kind, __u8 attach)
{
	struct rt_event *e = &h->ev;

	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->attach = attach;
	rt_fill_actor_noproc(e);
	return e;
}

/* A fresh event in the per-CPU heap, actor filled. */
static __always_inline struct rt_event *rt_new_event(struct rt_heap *h, __u8 kind, __u8 attach)
{
	struct rt_event *e = &h->ev;

	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->attach = attach;
	rt_fill_actor(e);
	return e;
}

#endif
