// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Tier 3: who made the changes that rtnetlink notifies with no requester.
 *
 * A notification with portid 0 names no netlink request: the change came
 * from an ioctl (route(8), ifconfig), or from the kernel itself (a lifetime
 * ending, a link losing its carrier, the IPv6 GC). The kernel queues the
 * notification to each listener from inside the change, in the context of
 * whoever made it, and then calls the listener's sk_data_ready: at that
 * moment, on routetrace's own listener sockets, the current task is the
 * actor, unless the change runs in a kernel thread or an interrupt.
 *
 * One RT_KIND_ORIGIN record per such notification made inside an ioctl,
 * stamped with the actor and, in `count`, a hash of the notification's first bytes, which user
 * space computes again on the message it reads: the join is exact, not by
 * time. It replaces the ioctl syscall tracepoints for successful changes,
 * with no cost to any other syscall (the tracepoint fires on every socket's
 * wakeup, and leaves after two loads for any socket but a NETLINK_ROUTE
 * one). Needs the sk_data_ready BTF tracepoint (kernel 6.6+).
 */
#include "include/common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* routetrace's listener sockets, by namespace and portid: filled by user
 * space as listeners open, emptied as they close. */
struct listener_key {
	__u32 netns;
	__u32 portid;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct listener_key);
	__type(value, __u8);
} listeners SEC(".maps");

/* Bytes of a notification the hash covers, header included: enough to
 * tell two notifications of one burst apart (type, the object's key). */
#define RT_ORIGIN_HASH_BYTES 128

/* The syscall number of ioctl, per architecture. */
#if defined(__TARGET_ARCH_arm64)
#define RT_NR_IOCTL 29
#else
#define RT_NR_IOCTL 16
#endif

/* The task's syscall: x86's orig_ax, arm64's syscallno. Flavours of
 * pt_regs, so that one vmlinux.h serves both (CO-RE picks the field). */
struct pt_regs___rt_x86 {
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct pt_regs___rt_arm64 {
	int syscallno;
} __attribute__((preserve_access_index));

static __always_inline long rt_syscall_nr(struct task_struct *task)
{
	/* A trusted BTF pointer: direct loads, no probe-read helper (this
	 * runs for every rtnetlink wakeup on the node). */
	void *regs = (void *)bpf_task_pt_regs(task);

	if (bpf_core_field_exists(struct pt_regs___rt_x86, orig_ax))
		return ((struct pt_regs___rt_x86 *)regs)->orig_ax;
	if (bpf_core_field_exists(struct pt_regs___rt_arm64, syscallno))
		return ((struct pt_regs___rt_arm64 *)regs)->syscallno;
	return -1;
}

/* In an interrupt, current is whatever task was interrupted, not the
 * actor. The preempt count says so; where it lives differs: in thread_info
 * on arm64, a per-CPU variable on x86 (__preempt_count before 6.2 and from
 * 6.15 on, a field of pcpu_hot between). Weak ksyms: 0 where absent. */
extern void __per_cpu_offset __ksym __weak;
extern void __preempt_count __ksym __weak;
extern void pcpu_hot __ksym __weak;

struct pcpu_hot___rt {
	int preempt_count;
} __attribute__((preserve_access_index));

struct thread_info___arm64 {
	__u64 preempt_count;
} __attribute__((preserve_access_index));

struct task_struct___arm64 {
	struct thread_info___arm64 thread_info;
} __attribute__((preserve_access_index));

#define RT_NMI_MASK 0x00f00000
#define RT_HARDIRQ_MASK 0x000f0000
#define RT_SOFTIRQ_OFFSET 0x00000100 /* serving a softirq, not merely BH off */

/* 1 in an interrupt, 0 in a task, -1 when the kernel does not say. */
static __always_inline int rt_in_interrupt(struct task_struct *task)
{
	__u64 count = 0;

	if (bpf_core_field_exists(struct thread_info___arm64, preempt_count)) {
		count = BPF_CORE_READ((struct task_struct___arm64 *)task, thread_info.preempt_count);
	} else {
		unsigned long base = 0, addr = 0;
		__u32 cpu = bpf_get_smp_processor_id();
		__u32 pc = 0;

		if (!&__per_cpu_offset)
			return -1;
		if (bpf_probe_read_kernel(&base, sizeof(base), (const unsigned long *)&__per_cpu_offset + (cpu & 8191)))
			return -1;
		if (&__preempt_count)
			addr = (unsigned long)&__preempt_count;
		else if (&pcpu_hot && bpf_core_type_exists(struct pcpu_hot___rt))
			addr = (unsigned long)&pcpu_hot + bpf_core_field_offset(struct pcpu_hot___rt, preempt_count);
		else
			return -1;
		if (bpf_probe_read_kernel(&pc, sizeof(pc), (const void *)(addr + base)))
			return -1;
		count = pc;
	}
	return (count & (RT_NMI_MASK | RT_HARDIRQ_MASK | RT_SOFTIRQ_OFFSET)) != 0;
}

/* FNV-1a over 32-bit words; user space computes the same (tier3.OriginHash). */
static __always_inline __u32 rt_origin_hash(const __u8 *buf, __u32 len)
{
	__u32 h = 2166136261U;
	int i;

	len &= ~3U;
#pragma unroll
	for (i = 0; i < RT_ORIGIN_HASH_BYTES / 4; i++) {
		if (i * 4 >= len)
			break;
		h ^= *(const __u32 *)&buf[i * 4];
		h *= 16777619U;
	}
	return h;
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(rt_notify_origin, const struct sock *sk)
{
	struct task_struct *task;
	struct listener_key key;
	struct sk_buff *skb;
	struct nlmsghdr nlh;
	struct rt_heap *h;
	struct rt_event *e;
	unsigned char *data;
	__u32 len;

	if (sk->__sk_common.skc_family != AF_NETLINK || sk->sk_protocol != NETLINK_ROUTE)
		return 0;
	/* Only an ioctl's, and most selective first: nearly every
	 * notification comes from a netlink request (its requester's
	 * sendmsg) or a kernel thread, and leaves here. In a kernel thread or
	 * an interrupt the kernel is the actor, as user space assumes; a
	 * netlink request's side effects are joined to that request. */
	task = bpf_get_current_task_btf();
	if (task->flags & PF_KTHREAD || rt_syscall_nr(task) != RT_NR_IOCTL)
		return 0;
	key.netns = sk->__sk_common.skc_net.net->ns.inum;
	key.portid = BPF_CORE_READ((struct netlink_sock *)sk, portid); /* past struct sock: read, not a direct load */
	if (!bpf_map_lookup_elem(&listeners, &key))
		return 0;
	if (rt_in_interrupt(task) == 1)
		return 0;
	/* Just queued: the tail of the receive queue. Read, not trusted:
	 * our reader may dequeue it at any moment. */
	skb = BPF_CORE_READ(sk, sk_receive_queue.prev);
	if (!skb || (void *)skb == (void *)&sk->sk_receive_queue)
		return 0;
	data = BPF_CORE_READ(skb, data);
	len = BPF_CORE_READ(skb, len);
	if (len < sizeof(nlh) || bpf_probe_read_kernel(&nlh, sizeof(nlh), data))
		return 0;
	if (nlh.nlmsg_pid != 0)
		return 0; /* names its requester: joined by portid and seq */
	h = rt_heap();
	if (!h)
		return 0;
	if (len > nlh.nlmsg_len)
		len = nlh.nlmsg_len;
	if (len > RT_ORIGIN_HASH_BYTES)
		len = RT_ORIGIN_HASH_BYTES;
	if (bpf_probe_read_kernel(h->buf, len & (RT_SCRATCH - 1), data))
		return 0;

	e = rt_new_event(h, RT_KIND_ORIGIN, RT_ATTACH_TRACEPOINT);
	e->netns = key.netns;
	e->nlmsg_type = nlh.nlmsg_type;
	e->seq = nlh.nlmsg_seq;
	e->count = rt_origin_hash(h->buf, len);
	e->origin = RT_ORIGIN_IOCTL;
	rt_emit(e);
	return 0;
}
