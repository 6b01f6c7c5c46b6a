// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Tier 3: rtnetlink and route-ioctl requests captured at the syscalls.
 *
 * Used where neither fentry nor kprobes load. Two captures of the same
 * records, of which user space attaches one:
 *
 *  - the socket capture (tp_btf/consume_skb, tp_btf/skb_copy_datagram_iovec)
 *    sees a request when the rtnetlink kernel socket frees it, still in the
 *    requester's task, and an ack when the requester copies it out. Those
 *    tracepoints fire only for freed and read skbs: every other syscall on
 *    the node keeps its fast path.
 *  - the syscall capture (tracepoint/syscalls/...) where tp_btf is refused:
 *    the requester's buffers at sys_enter. Enabling any syscall tracepoint
 *    puts every syscall of every task on the slow path.
 *
 * rtnetlink handles a request synchronously inside sendmsg, so the current
 * task in either place is the actor. Each
 * request message becomes an RT_KIND_REQUEST record carrying the socket's
 * portid and the message's seq; user space joins them with the kernel's
 * notifications (same portid and seq) so that only changes the kernel really
 * made are reported. Failures never produce a notification: the NLMSG_ERROR
 * answers the requester reads back become RT_KIND_ACK records.
 */
#include "include/common.h"
#include "include/rtnl_parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Limits of one pass. Loops run with bpf_loop, so the verifier checks each
 * body once whatever the bound; past a limit a record with RT_F_TRUNCATED and
 * no object says so, and user space counts it. */
#define MAX_MSGS_PER_BUF 4096 /* an `ip -batch` buffer holds a few hundred */
#define MAX_IOVS 16
#define MAX_MMSGS 64
#define MAX_ACKS_PER_READ 4096

#define MSG_PEEK 0x2


/* A netlink read in flight: where the answer lands. */
struct pending_read {
	__u64 buf;
	__u32 portid;
	__u32 netns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct pending_read);
} reads SEC(".maps");

/* Processes that sent a routing request: only their reads are scanned for
 * NLMSG_ERROR answers, so every other recvmsg on the node costs one hash
 * lookup instead of a walk from fd to socket. By process, not thread: a
 * multi-threaded requester (any Go agent) may read on another thread.
 * LRU: a process that exits is forgotten in time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} requesters SEC(".maps");

/* A route ioctl in flight: the request, waiting for its result. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct rt_event);
} ioctls SEC(".maps");

struct sock_info {
	__u32 portid;
	__u32 netns;
	__u16 family;
	__u16 protocol;
};

/* Looks up fd in the current task's file table; fills si for a socket. */
static __always_inline int sock_of_fd(__u64 fd, struct sock_info *si)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;
	struct socket *sock;
	struct sock *sk;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return -1;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return -1;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return -1; /* not a socket: its private_data does not point back */
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return -1;
	si->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	si->protocol = BPF_CORE_READ(sk, sk_protocol);
	si->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	si->portid = 0;
	if (si->family == AF_NETLINK)
		si->portid = BPF_CORE_READ((struct netlink_sock *)sk, portid);
	return 0;
}

static __always_inline int rtnl_sock(__u64 fd, struct sock_info *si)
{
	if (self_tgid && (bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return -1;
	if (sock_of_fd(fd, si))
		return -1;
	if (si->family != AF_NETLINK || si->protocol != NETLINK_ROUTE)
		return -1;
	return 0;
}

/* Says that a capture stopped at one of its limits (see RT_OBJ_NONE). */
static __always_inline void emit_limit(__u8 kind, struct sock_info *si)
{
	struct rt_heap *h = rt_heap();
	struct rt_event *e;

	if (!h)
		return;
	/* No process record: a limit record is counted, not reported, and
	 * its callers run under bpf_loop callbacks, where rt_proc_new's frame
	 * would pass the combined stack limit. */
	e = rt_new_event_noproc(h, kind, RT_ATTACH_TRACEPOINT);
	e->origin = RT_ORIGIN_NETLINK;
	e->portid = si->portid;
	e->netns = si->netns;
	e->flags |= RT_F_TRUNCATED;
	rt_emit(e);
}

/* Where a walked buffer lives: the syscall capture reads the requester's
 * memory, the socket capture the skb's. One walk serves both, so that the
 * two captures cannot drift apart. */
static __always_inline long walk_read(__u8 user, void *dst, __u32 size, const void *src)
{
	if (user)
		return bpf_probe_read_user(dst, size, src);
	return bpf_probe_read_kernel(dst, size, src);
}

struct buf_walk {
	const __u8 *buf;
	__u64 len;
	__u64 off;
	struct sock_info *si;
	__u64 user; /* buf is user memory */
	__u64 ended; /* the walk reached the end, or bytes that are no message */
	__u64 captured; /* a request was captured: its acks are worth a scan */
	struct rt_actor actor; /* who sent the buffer, read once */
};

/* One message of a request buffer; returns 1 to stop the walk. */
static long capture_one(__u64 index, void *ctx)
{
	struct buf_walk *w = ctx;
	struct rt_heap *h = rt_heap();
	struct nlmsghdr nlh;
	__u32 n;

	w->ended = 1; /* until this message is walked past */
	if (!h)
		return 1;
	if (w->off + NLMSG_HDRLEN > w->len)
		return 1;
	if (walk_read(w->user, &nlh, sizeof(nlh), w->buf + w->off))
		return 1;
	if (nlh.nlmsg_len < NLMSG_HDRLEN || w->off + nlh.nlmsg_len > w->len)
		return 1;
	if (rtnl_type_wanted(nlh.nlmsg_type)) {
		n = nlh.nlmsg_len;
		if (n > RT_SCRATCH)
			n = RT_SCRATCH;
		if (walk_read(w->user, h->buf, n & (RT_SCRATCH * 2 - 1), w->buf + w->off) == 0) {
			struct rt_event *e = rt_new_event_as(h, RT_KIND_REQUEST, RT_ATTACH_TRACEPOINT, &w->actor);

			e->origin = RT_ORIGIN_NETLINK;
			e->portid = w->si->portid;
			e->netns = w->si->netns;
			if (rtnl_parse_heap(n) == RT_PARSE_OK) {
				/* rtnl_parse_heap found the heap itself: use it again */
				h = rt_heap();
				if (!h)
					return 1;
				h->ev.proc_cookie = w->actor.proc_cookie;
				rt_emit(&h->ev);
				w->captured = 1;
			}
		}
	}
	w->off += (nlh.nlmsg_len + 3) & ~3U;
	w->ended = 0;
	return 0;
}

/* Emits one request record per wanted message in a buffer of requests,
 * each stamped with the actor w->actor the caller filled in; returns
 * whether any was captured. */
static __always_inline int walk_requests(struct buf_walk *w)
{
	__u64 len = w->len;

	bpf_loop(MAX_MSGS_PER_BUF, capture_one, w, 0);
	/* More messages than one pass covers (not a walk that ended at the
	 * buffer's end or at slack past the last message): user space
	 * attributes the rest by the socket's portid, and counts it. */
	if (!w->ended && w->off + NLMSG_HDRLEN <= len)
		emit_limit(RT_KIND_REQUEST, w->si);
	return w->captured;
}

/* The process record of the syscall capture's current task, looked up in
 * the syscall program's own frame: under bpf_loop callbacks the global
 * rt_proc_new's frame passed the verifier's 512-byte combined stack (6.1
 * with sendmmsg's callback, 6.12 with capture_one). So the syscall capture
 * (the fallback) sends a record for a process's first rtnetlink send even
 * when it is a dump. 0 for a kernel thread. */
static __always_inline __u64 syscall_proc_cookie(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct rt_heap *h = rt_heap();

	if (!h || (BPF_CORE_READ(task, flags) & PF_KTHREAD))
		return 0;
	/* the key in the heap, not on the stack: sendmmsg's callback frames
	 * are near the 512-byte combined limit */
	h->proc_key.start_time = BPF_CORE_READ(task, group_leader, start_time);
	h->proc_key.exec_id = BPF_CORE_READ(task, self_exec_id);
	h->proc_key.cset = (__u64)BPF_CORE_READ(task, cgroups);
	h->proc_key.tgid = bpf_get_current_pid_tgid() >> 32;
	h->proc_key.pad = 0;
	return rt_proc_cookie_of(&h->proc_key);
}

/* The syscall capture's walk of one user buffer, by the process whose
 * record is cookie. */
static __always_inline void capture_buf(const __u8 *ubuf, __u64 len, struct sock_info *si, __u64 cookie)
{
	struct buf_walk w = {.buf = ubuf, .len = len, .si = si, .user = 1};
	struct rt_heap *h = rt_heap();

	if (!h)
		return;
	rt_save_actor(rt_new_event_noproc(h, RT_KIND_REQUEST, RT_ATTACH_TRACEPOINT), &w.actor);
	w.actor.proc_cookie = cookie;
	if (walk_requests(&w)) {
		/* by process: a Go requester reads its acks on whichever
		 * thread its goroutine runs on next */
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		__u8 one = 1;

		bpf_map_update_elem(&requesters, &tgid, &one, BPF_ANY);
	}
}

static __always_inline void capture_msghdr(const struct user_msghdr *umsg, struct sock_info *si, __u64 cookie)
{
	struct user_msghdr msg;
	int i;

	if (bpf_probe_read_user(&msg, sizeof(msg), umsg))
		return;
	if (msg.msg_name) {
		struct sockaddr_nl sa = {};

		/* Only requests addressed to the kernel (nl_pid 0) change routes. */
		if (bpf_probe_read_user(&sa, sizeof(sa), msg.msg_name) == 0 && sa.nl_pid != 0)
			return;
	}
	for (i = 0; i < MAX_IOVS; i++) {
		struct iovec iov;

		if (i >= msg.msg_iovlen)
			return;
		if (bpf_probe_read_user(&iov, sizeof(iov), &msg.msg_iov[i]))
			return;
		capture_buf(iov.iov_base, iov.iov_len, si, cookie);
	}
	if (msg.msg_iovlen > MAX_IOVS)
		emit_limit(RT_KIND_REQUEST, si);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int rt_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	struct sock_info si;

	if (rtnl_sock(ctx->args[0], &si))
		return 0;
	capture_msghdr((const struct user_msghdr *)ctx->args[1], &si, syscall_proc_cookie());
	return 0;
}

struct mmsg_walk {
	const struct mmsghdr *vec;
	__u64 vlen;
	struct sock_info *si;
	__u64 cookie; /* one task sends them all */
};

static long capture_mmsg(__u64 index, void *ctx)
{
	struct mmsg_walk *w = ctx;

	if (index >= w->vlen)
		return 1;
	capture_msghdr(&w->vec[index].msg_hdr, w->si, w->cookie);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int rt_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	struct sock_info si;
	struct mmsg_walk w = {.vec = (const struct mmsghdr *)ctx->args[1], .vlen = ctx->args[2], .si = &si};

	if (rtnl_sock(ctx->args[0], &si))
		return 0;
	w.cookie = syscall_proc_cookie();
	bpf_loop(MAX_MMSGS, capture_mmsg, &w, 0);
	if (w.vlen > MAX_MMSGS)
		emit_limit(RT_KIND_REQUEST, &si);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int rt_sendto(struct trace_event_raw_sys_enter *ctx)
{
	struct sock_info si;

	if (rtnl_sock(ctx->args[0], &si))
		return 0;
	if (ctx->args[4]) {
		struct sockaddr_nl sa = {};

		if (bpf_probe_read_user(&sa, sizeof(sa), (void *)ctx->args[4]) == 0 && sa.nl_pid != 0)
			return 0;
	}
	capture_buf((const __u8 *)ctx->args[1], ctx->args[2], &si, syscall_proc_cookie());
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int rt_write(struct trace_event_raw_sys_enter *ctx)
{
	struct sock_info si;

	if (rtnl_sock(ctx->args[0], &si))
		return 0;
	capture_buf((const __u8 *)ctx->args[1], ctx->args[2], &si, syscall_proc_cookie());
	return 0;
}

/* --- answers: NLMSG_ERROR records read back by the requester --- */

static __always_inline void stash_read(__u64 fd, __u64 buf)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct pending_read pr = {};
	struct sock_info si;

	if (!buf || !bpf_map_lookup_elem(&requesters, &tgid))
		return;
	if (rtnl_sock(fd, &si))
		return;
	pr.buf = buf;
	pr.portid = si.portid;
	pr.netns = si.netns;
	bpf_map_update_elem(&reads, &id, &pr, BPF_ANY);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int rt_recvmsg_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct user_msghdr msg;
	struct iovec iov;

	/* iproute2 peeks to size its buffer, then reads: scan the read only */
	if (ctx->args[2] & MSG_PEEK)
		return 0;
	if (bpf_probe_read_user(&msg, sizeof(msg), (void *)ctx->args[1]) || msg.msg_iovlen < 1)
		return 0;
	if (bpf_probe_read_user(&iov, sizeof(iov), msg.msg_iov))
		return 0;
	stash_read(ctx->args[0], (__u64)iov.iov_base);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int rt_recvfrom_enter(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	stash_read(ctx->args[0], ctx->args[1]);
	return 0;
}

struct ack_walk {
	const __u8 *buf;
	__u64 len;
	__u64 off;
	__u64 user; /* buf is user memory */
	__u32 portid;
	__u32 netns;
	__u64 ended;
	__u64 cookie; /* the reader's process record */
};

/* Whether the success of a request of this type matters: the requests that
 * make the kernel remove routes by itself. Their acks tell user space the
 * request has completed, so that it compares routes after the kernel's
 * flush, not in the middle of it. */
static __always_inline int completion_wanted(__u16 type)
{
	return type == RTM_DELADDR || type == RTM_NEWLINK || type == RTM_SETLINK || type == RTM_DELLINK ||
	       type == RTM_DELNEXTHOP;
}

/* An NLMSG_ERROR message as far as acks are read: the failed request's
 * header follows the errno. */
struct ack_msg {
	struct nlmsghdr hdr;
	__s32 error;
	struct nlmsghdr orig;
};

/* Failures, and completions of flushing requests, become ACK records. */
static __always_inline void report_ack(struct rt_heap *h, const struct ack_msg *ack, __u32 portid, __u32 netns,
				       __u64 cookie)
{
	struct rt_event *e;

	if (ack->hdr.nlmsg_type != NLMSG_ERROR || !rtnl_type_wanted(ack->orig.nlmsg_type) ||
	    (ack->error == 0 && !completion_wanted(ack->orig.nlmsg_type)))
		return;
	/* the cookie is looked up by the caller, in the program's own frame */
	e = rt_new_event_noproc(h, RT_KIND_ACK, RT_ATTACH_TRACEPOINT);
	if (!(e->flags & RT_F_KTHREAD))
		e->proc_cookie = cookie;
	e->origin = RT_ORIGIN_NETLINK;
	e->portid = portid;
	e->netns = netns;
	e->err = ack->error;
	e->seq = ack->orig.nlmsg_seq;
	e->nlmsg_type = ack->orig.nlmsg_type;
	e->nlmsg_flags = ack->orig.nlmsg_flags;
	rt_emit(e);
}

/* One message of a read (see report_ack). Returns 1 to stop the walk. */
static long scan_one(__u64 index, void *ctx)
{
	struct ack_walk *w = ctx;
	struct rt_heap *h = rt_heap();
	struct ack_msg ack;

	w->ended = 1;
	if (!h)
		return 1;
	if (w->off + NLMSG_HDRLEN > w->len)
		return 1;
	if (walk_read(w->user, &ack, sizeof(ack), w->buf + w->off))
		return 1;
	if (ack.hdr.nlmsg_len < NLMSG_HDRLEN)
		return 1;
	/* The kernel sends each ack in a datagram of its own: a datagram
	 * that does not start with one is a dump part or a notification,
	 * whose hundreds of messages need no walk. */
	if (index == 0 && ack.hdr.nlmsg_type != NLMSG_ERROR)
		return 1;
	report_ack(h, &ack, w->portid, w->netns, w->cookie);
	w->off += (ack.hdr.nlmsg_len + 3) & ~3U;
	w->ended = 0;
	return 0;
}

/* Emits ACK records for the acks at the start of a read datagram. */
static __always_inline void walk_acks(const __u8 *buf, __u64 len, struct sock_info *si, __u8 user, __u64 cookie)
{
	struct ack_walk w = {.buf = buf, .len = len, .user = user, .portid = si->portid, .netns = si->netns,
			     .cookie = cookie};

	bpf_loop(MAX_ACKS_PER_READ, scan_one, &w, 0);
	if (!w.ended && w.off + NLMSG_HDRLEN <= w.len)
		emit_limit(RT_KIND_ACK, si);
}

static __always_inline void scan_acks(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_read *pr = bpf_map_lookup_elem(&reads, &id);

	if (!pr)
		return;
	if (ret > 0) {
		struct sock_info si = {.portid = pr->portid, .netns = pr->netns};

		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		__u64 cookie = 0;

		if (!(BPF_CORE_READ(task, flags) & PF_KTHREAD))
			cookie = rt_proc_cookie(task, id >> 32);
		walk_acks((const __u8 *)pr->buf, ret, &si, 1, cookie);
	}
	bpf_map_delete_elem(&reads, &id);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int rt_recvmsg_exit(struct trace_event_raw_sys_exit *ctx)
{
	scan_acks(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int rt_recvfrom_exit(struct trace_event_raw_sys_exit *ctx)
{
	scan_acks(ctx->ret);
	return 0;
}

/* --- the socket capture: requests and acks where the skbs pass --- */

/* Whether sk is an rtnetlink socket. These two loads are all that every
 * other skb freed or read on the node costs. */
static __always_inline int rtnl_sk(const struct sock *sk)
{
	return sk && sk->__sk_common.skc_family == AF_NETLINK && sk->sk_protocol == NETLINK_ROUTE;
}

/* The current task as the actor of a batch, read with direct loads through
 * its BTF pointer (tp_btf): a few nanoseconds each, where a helper call
 * costs tens (measured: ~100 ns less per request than the helpers). The
 * same values rt_fill_actor gets from the helpers: the uid is the cred's
 * (from_kuid in the initial namespace is the raw value), the cgroup id is
 * that of the default hierarchy's cgroup (what bpf_get_current_cgroup_id
 * reads), the comms are NUL-padded (set_task_comm). */
static __always_inline void actor_now(struct rt_actor *a)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_struct *parent = task->real_parent;

	a->pid = task->pid;
	a->tgid = task->tgid;
	a->uid = task->cred->uid.val;
	a->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	__builtin_memcpy(a->comm, task->comm, sizeof(a->comm));
	a->ppid = parent->tgid;
	__builtin_memcpy(a->pcomm, parent->comm, sizeof(a->pcomm));
	a->actor_netns = task->nsproxy->net_ns->ns.inum;
	a->flags = (task->flags & PF_KTHREAD) ? RT_F_KTHREAD : 0;
	a->pad = 0;
	a->proc_cookie = 0; /* looked up by capture_one, if a request is wanted */
}

/* The current process's identity (rt_proc_key), by direct loads: a few
 * nanoseconds, where the CO-RE reads of rt_proc_cookie cost four helper
 * calls. */
static __always_inline void proc_key_now(struct rt_proc_key *k)
{
	struct task_struct *task = bpf_get_current_task_btf();

	k->start_time = task->group_leader->start_time;
	k->exec_id = task->self_exec_id;
	/* Copied, not loaded: a loaded task->cgroups stays an RCU pointer to
	 * the verifier, which rt_proc_new (a global function) refuses as an
	 * argument where it wants a scalar. */
	bpf_probe_read_kernel(&k->cset, sizeof(k->cset), &task->cgroups);
	k->tgid = task->tgid;
	k->pad = 0;
}

/* A request, when the rtnetlink kernel socket frees it: netlink_unicast_kernel
 * runs nlk->netlink_rcv(skb) and then consume_skb(skb), synchronously in the
 * requester's task, whatever the requester called (sendmsg, sendmmsg, sendto,
 * write, io_uring). skb->sk is the kernel socket (netlink_skb_set_owner_r),
 * NETLINK_CB(skb) names the sender. Requests that start a dump are freed
 * later, when the dump ends; routetrace wants none of their types. */
SEC("tp_btf/consume_skb")
int BPF_PROG(rt_skb_consume, struct sk_buff *skb)
{
	struct sock *sk = skb->sk;
	struct netlink_skb_parms *cb;
	struct sock *sender;
	struct sock_info si = {};
	struct buf_walk w = {.si = &si};
	struct rt_heap *h;
	__u32 tail;

	if (!rtnl_sk(sk))
		return 0;
	/* NETLINK_CB(skb).sk names the sender only on the way into a kernel
	 * socket (netlink_unicast_kernel); loaded directly, as the other
	 * fields through the skb's and the socket's BTF pointers */
	cb = (struct netlink_skb_parms *)&skb->cb[0];
	sender = cb->sk;
	if (!sender || sender == sk)
		return 0;
	/* and a kernel socket has a receive function: the test
	 * netlink_unicast_kernel itself makes */
	if (!BPF_CORE_READ((struct netlink_sock *)sk, netlink_rcv))
		return 0;
	if (self_tgid && (bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return 0;
	si.portid = cb->portid;
	si.netns = sk->__sk_common.skc_net.net->ns.inum;
	/* netlink_rcv_skb pulled each message it handled, so skb->data is at
	 * the end by now. The request was copied to the start of the buffer
	 * (netlink_sendmsg reserves no headroom; netlink_trim keeps none) and
	 * is linear: it runs from head to tail (offsets on 64-bit). */
	tail = skb->tail;
	if (tail > skb->end || skb->data_len)
		return 0; /* not the layout above: never walk what it is not */
	/* read, not loaded: a pointer loaded from the skb is typed memory
	 * whose every offset the verifier would follow through the loop */
	w.buf = BPF_CORE_READ(skb, head);
	w.len = tail;
	actor_now(&w.actor);
	h = rt_heap();
	if (!h)
		return 0;
	/* The process record in this frame, not in capture_one: a global
	 * function called under the syscall capture's nested bpf_loop
	 * callbacks passes the 512-byte combined stack (6.12 counts every
	 * call in the graph). Only for a buffer whose first message is a
	 * request we want: `ip route show` and other dumps send none. */
	if (!w.actor.flags) {
		struct nlmsghdr first;

		if (bpf_probe_read_kernel(&first, sizeof(first), w.buf) == 0 && rtnl_type_wanted(first.nlmsg_type)) {
			proc_key_now(&h->proc_key);
			w.actor.proc_cookie = rt_proc_cookie_of(&h->proc_key);
		}
	}
	walk_requests(&w);
	return 0;
}

/* An ack, when its reader copies it out of the socket (recvmsg, recvfrom,
 * read, recvmmsg, io_uring alike), in the reader's task.
 *
 * A reader that peeks (iproute2 does, to size its buffer) copies the skb
 * twice. The peek leaves the skb on the receive queue; the real read
 * unlinks it first (__skb_try_recv_from_queue, __skb_unlink clears
 * skb->next). So the copy of an skb that is still linked is a peek and is
 * skipped: no map to write on every ack and to clean when the skb is freed
 * (an LRU keyed by the skb's address would also confuse a reused address
 * with the same skb if its entry outlived the free). A reader that only
 * ever peeks is not reported: it never took the ack. */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(rt_skb_copy, const struct sk_buff *skb, int copied)
{
	struct sock *sk = skb->sk;
	struct sock_info si = {};
	struct ack_msg ack;
	struct rt_heap *h;
	const __u8 *data;
	__u64 cookie = 0;
	__u32 len;

	if (!rtnl_sk(sk))
		return 0;
	if (skb->next)
		return 0; /* a peek: reported when it is read */
	data = BPF_CORE_READ(skb, data); /* a scalar, as head above */
	/* each ack is a datagram of its own: anything else (dump parts,
	 * notifications) is left after one read of its first header */
	if (bpf_probe_read_kernel(&ack, sizeof(ack), data) || ack.hdr.nlmsg_type != NLMSG_ERROR)
		return 0;
	if (self_tgid && (bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return 0;
	si.portid = BPF_CORE_READ((struct netlink_sock *)sk, portid);
	si.netns = sk->__sk_common.skc_net.net->ns.inum;
	len = skb->len;
	/* The reader's process record, only for a datagram whose first ack
	 * is reported (a failure or a completion): a successful route
	 * change's ack costs no lookup. */
	if (ack.error != 0 || completion_wanted(ack.orig.nlmsg_type)) {
		struct rt_proc_key k;

		proc_key_now(&k);
		cookie = rt_proc_cookie_of(&k);
	}
	if (ack.hdr.nlmsg_len >= NLMSG_HDRLEN && ((ack.hdr.nlmsg_len + 3) & ~3U) >= len) {
		/* the one message of the datagram (netlink_ack sends each
		 * ack alone): no walk */
		h = rt_heap();
		if (h)
			report_ack(h, &ack, si.portid, si.netns, cookie);
		return 0;
	}
	walk_acks(data, len, &si, 0, cookie);
	return 0;
}

/* --- the legacy ioctl path (net-tools `route`) --- */

SEC("tracepoint/syscalls/sys_enter_ioctl")
int rt_ioctl_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 cmd = ctx->args[1];
	struct sock_info si;
	struct rt_heap *h;
	struct rt_event *e;

	if (cmd != SIOCADDRT && cmd != SIOCDELRT)
		return 0;
	if (self_tgid && (id >> 32) == self_tgid)
		return 0;
	if (sock_of_fd(ctx->args[0], &si))
		return 0;
	h = rt_heap();
	if (!h)
		return 0;
	e = rt_new_event(h, RT_KIND_REQUEST, RT_ATTACH_TRACEPOINT);
	e->origin = RT_ORIGIN_IOCTL;
	e->op = cmd == SIOCADDRT ? RT_OP_ADD : RT_OP_DELETE;
	e->netns = si.netns;
	if (rtnl_parse_route_ioctl(e, si.family, (const void *)ctx->args[2]))
		return 0;
	bpf_map_update_elem(&ioctls, &id, e, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_ioctl")
int rt_ioctl_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct rt_event *e = bpf_map_lookup_elem(&ioctls, &id);

	if (!e)
		return 0;
	e->err = ctx->ret;
	rt_emit(e);
	bpf_map_delete_elem(&ioctls, &id);
	return 0;
}
