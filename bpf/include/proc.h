/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Process records (RT_KIND_PROC, struct rt_proc): who the actor is, in the
 * user's terms (argv, executable, cgroup path), read by the kernel at the
 * moment it acts. A process that runs `ip route del` and exits within
 * milliseconds, and whose cgroup is removed right after, is gone before
 * user space could read /proc: the record is the only witness.
 *
 * One record per process identity, not per change: procs_seen maps the
 * identity to the cookie of the record already sent, so the hot path costs
 * one LRU lookup (and the reads of the key) per record; the walks below run
 * only on a miss. Included by common.h; every object shares procs_seen and
 * proc_heap with fib's (tracer/tracer.go sharedMaps), so cookies are unique
 * across objects and a process is recorded once whichever tier saw it.
 *
 * Only CO-RE reads and loops with constant bounds: the same code loads on
 * 5.10 to 7.x (no bpf_loop, no version checks).
 */
#ifndef ROUTETRACE_PROC_H
#define ROUTETRACE_PROC_H

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct rt_proc_key);
	__type(value, __u64); /* the cookie of the record sent */
} procs_seen SEC(".maps");

/* Paths are built backwards, leaf first, in a scratch whose index is
 * masked with RT_PROC_SCRATCH - 1; the slack after it keeps a masked
 * index plus one name inside the buffer for the verifier. */
#define RT_PROC_SCRATCH 1024
#define RT_PROC_NAME 256

/* Per-CPU: the record being built (1.8 KiB, far past the 512-byte stack),
 * the path scratch, and the cookie counter. */
struct rt_proc_slot {
	struct rt_proc p;
	char path[RT_PROC_SCRATCH + RT_PROC_NAME];
	char name[RT_PROC_NAME];
	struct rt_proc_key key; /* rt_proc_new's key: here, not on its stack */
	__u64 next; /* records numbered on this CPU: cookie = next << 16 | cpu */
	/* A program preempted (or interrupted) half-way through a record on
	 * this CPU: the other program gets no record (cookie 0) rather than
	 * mixing its process into it. */
	__u32 busy;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rt_proc_slot);
} proc_heap SEC(".maps");

/* kernfs_node.parent became __parent in 6.15 (RCU-protected). */
struct kernfs_node___pre_6_15 {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *rt_kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___pre_6_15 *)kn, parent);
}

/* Puts "/" and the NUL-terminated kernel string name in front of
 * s->path[*pos...]. Returns -1 when it does not fit in the *pos bytes
 * left (the caller flags truncation: what is built so far, the leaf end,
 * is kept). */
static __always_inline int rt_prepend(struct rt_proc_slot *s, __u32 *pos, const char *name)
{
	long n = bpf_probe_read_kernel_str(s->name, RT_PROC_NAME, name);
	__u32 p = *pos, len;

	if (n < 1)
		return -1;
	len = n - 1;
	if (len + 1 > p)
		return -1;
	p -= len + 1;
	p &= RT_PROC_SCRATCH - 1;
	s->path[p] = '/';
	bpf_probe_read_kernel(&s->path[(p + 1) & (RT_PROC_SCRATCH - 1)], len & (RT_PROC_NAME - 1), s->name);
	*pos = p;
	return 0;
}

/* Copies the path built in s->path[pos, end) to dst; returns its length. */
static __always_inline __u16 rt_path_out(struct rt_proc_slot *s, char *dst, __u32 pos, __u32 end, __u32 max)
{
	__u32 len = end - pos;

	if (len == 0) { /* the root itself */
		dst[0] = '/';
		return 1;
	}
	if (len > max)
		len = max;
	bpf_probe_read_kernel(dst, len, &s->path[pos & (RT_PROC_SCRATCH - 1)]);
	return len;
}

/* The executable's path: mm->exe_file's dentry walked up through d_parent
 * to its filesystem's root. Mount points are not crossed (no vfsmount
 * walk): a binary on a filesystem mounted below / is named from that
 * filesystem's root, e.g. "/bin/ip" for /usr on its own partition. In a
 * container, the root is the container's (overlayfs) root, which is the
 * path the container itself sees. */
static __always_inline void rt_proc_exe(struct rt_proc_slot *s, struct mm_struct *mm)
{
	struct dentry *d = BPF_CORE_READ(mm, exe_file, f_path.dentry);
	__u32 pos = RT_PROC_EXE_LEN;
	int i, done = 0;

	if (!d)
		return;
	for (i = 0; i < RT_PROC_MAX_DEPTH; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);

		if (!parent || parent == d) {
			done = 1;
			break;
		}
		if (rt_prepend(s, &pos, (const char *)BPF_CORE_READ(d, d_name.name)))
			break;
		d = parent;
	}
	if (!done)
		s->p.flags |= RT_PROC_F_EXE_TRUNC;
	s->p.exe_len = rt_path_out(s, s->p.exe, pos, RT_PROC_EXE_LEN, RT_PROC_EXE_LEN);
}

/* The cgroup's path from its hierarchy's root, through the kernfs nodes
 * (the cgroup directory's names). */
static __always_inline void rt_proc_cgroup_path(struct rt_proc_slot *s, struct cgroup *cgrp)
{
	struct kernfs_node *kn = BPF_CORE_READ(cgrp, kn);
	__u32 pos = RT_PROC_CGROUP_LEN;
	int i, done = 0;

	for (i = 0; i < RT_PROC_MAX_DEPTH && kn; i++) {
		struct kernfs_node *parent = rt_kn_parent(kn);

		if (!parent) { /* the hierarchy's root: not part of the path */
			done = 1;
			break;
		}
		if (rt_prepend(s, &pos, BPF_CORE_READ(kn, name)))
			break;
		kn = parent;
	}
	if (!done)
		s->p.flags |= RT_PROC_F_CGROUP_TRUNC;
	s->p.cgroup_len = rt_path_out(s, s->p.cgroup, pos, RT_PROC_CGROUP_LEN, RT_PROC_CGROUP_LEN);
}

/* The cgroup that says most about the task: the deepest one over every
 * hierarchy it is in (the css_set's links, one per hierarchy, cgroup2
 * included), ties going to cgroup2. On a pure cgroup2 node that is the
 * cgroup2 one; on a hybrid node whichever v1 hierarchy systemd, a
 * container runtime or a test nested deepest (memory, name=systemd...).
 * cgroup2's default hierarchy is told apart by its root: the same as that
 * of the css_set's dfl_cgrp (its hierarchy_id is 0, as v1 ids start at 1). */
static __always_inline void rt_proc_cgroup(struct rt_proc_slot *s, struct task_struct *task)
{
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup *dfl = BPF_CORE_READ(cset, dfl_cgrp);
	struct cgroup_root *dfl_root = BPF_CORE_READ(dfl, root);
	__u64 head = (__u64)cset + bpf_core_field_offset(struct css_set, cgrp_links);
	__u64 off = bpf_core_field_offset(struct cgrp_cset_link, cgrp_link);
	struct list_head *node = BPF_CORE_READ(cset, cgrp_links.next);
	struct cgroup *best = dfl;
	int best_level = -1, best_dfl = 1;
	int i;

	for (i = 0; i < RT_PROC_MAX_DEPTH; i++) {
		struct cgrp_cset_link *link;
		struct cgroup *cgrp;
		int level, is_dfl;

		if (!node || (__u64)node == head)
			break;
		/* container_of(node, struct cgrp_cset_link, cgrp_link) */
		link = (struct cgrp_cset_link *)((__u64)node - off);
		cgrp = BPF_CORE_READ(link, cgrp);
		level = BPF_CORE_READ(cgrp, level);
		is_dfl = BPF_CORE_READ(cgrp, root) == dfl_root;
		if (cgrp && (level > best_level || (level == best_level && is_dfl))) {
			best = cgrp;
			best_level = level;
			best_dfl = is_dfl;
		}
		node = BPF_CORE_READ(node, next);
	}
	if (!best)
		return;
	if (best_level < 0)
		best_level = BPF_CORE_READ(best, level);
	s->p.cgroup_id = BPF_CORE_READ(best, kn, id);
	s->p.hierarchy = BPF_CORE_READ(best, root, hierarchy_id);
	s->p.cgroup_level = best_level;
	if (best_dfl)
		s->p.flags |= RT_PROC_F_CGROUP2;
	rt_proc_cgroup_path(s, best);
}

/* Builds and sends the record of the current task's process, and
 * remembers its cookie under k. Returns the cookie, or 0 when no record
 * was sent (no user memory: a kernel thread or an exiting task; this CPU's
 * slot busy; the ring full, counted as lost: the next record tries again).
 * A global function: the verifier checks it once per program, on its own,
 * instead of once per call site with the caller's state (the syscall
 * capture calls it from a bpf_loop callback inside a loop over 16 iovecs,
 * which then passed the verifier's 1M-instruction limit). Hence scalar
 * arguments only (what 5.10 allows a global function), and its own copy
 * of the key. */
__noinline __u64 rt_proc_new(__u64 start_time, __u64 exec_id, __u64 cset, __u32 tgid)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 zero = 0, cpu = bpf_get_smp_processor_id();
	struct rt_proc_slot *s = bpf_map_lookup_elem(&proc_heap, &zero);
	struct mm_struct *mm;
	struct rt_proc *p;
	__u64 cookie, start, end, len;

	if (!s || s->busy)
		return 0;
	mm = BPF_CORE_READ(task, mm);
	if (!mm)
		return 0;
	s->busy = 1;
	s->key.start_time = start_time;
	s->key.exec_id = exec_id;
	s->key.cset = cset;
	s->key.tgid = tgid;
	s->key.pad = 0;
	s->next++;
	cookie = (s->next << 16) | (cpu & 0xffff);

	/* The header is zeroed; argv, exe and cgroup are valid up to their
	 * lengths only. */
	p = &s->p;
	__builtin_memset(p, 0, __builtin_offsetof(struct rt_proc, argv));
	p->kind = RT_KIND_PROC;
	p->ts_ns = bpf_ktime_get_ns();
	p->cookie = cookie;
	p->pid = (__u32)bpf_get_current_pid_tgid();
	p->tgid = tgid;
	p->ppid = BPF_CORE_READ(task, real_parent, tgid);
	p->uid = (__u32)bpf_get_current_uid_gid();
	p->cgroup2_id = bpf_get_current_cgroup_id();

	/* The arguments as the process laid them out: NUL-separated, in its
	 * own memory (we run in its task). */
	start = BPF_CORE_READ(mm, arg_start);
	end = BPF_CORE_READ(mm, arg_end);
	len = end > start ? end - start : 0;
	if (len > RT_PROC_ARGV_LEN) {
		len = RT_PROC_ARGV_LEN;
		p->flags |= RT_PROC_F_ARGV_TRUNC;
	}
	if (len && bpf_probe_read_user(p->argv, len, (const void *)start) != 0) {
		len = 0; /* not paged in: a tracepoint cannot fault it in */
		p->flags |= RT_PROC_F_ARGV_TRUNC;
	}
	p->argv_len = len;

	rt_proc_exe(s, mm);
	rt_proc_cgroup(s, task);

	/* Ring order is reservation order: this record is reserved before
	 * the record that will carry its cookie (the caller emits that one
	 * after we return), so user space reads it first. */
	if (rt_output(p, sizeof(*p)) == 0)
		bpf_map_update_elem(&procs_seen, &s->key, &cookie, BPF_ANY);
	else
		cookie = 0;
	s->busy = 0;
	return cookie;
}

/* The cookie of the current process's record, sending the record first
 * if this identity has none. k is filled by the caller (tgid, the group
 * leader's start_time, self_exec_id, the css_set). */
static __always_inline __u64 rt_proc_cookie_of(const struct rt_proc_key *k)
{
	__u64 *c = bpf_map_lookup_elem(&procs_seen, k);

	if (c)
		return *c;
	return rt_proc_new(k->start_time, k->exec_id, k->cset, k->tgid);
}

/* The same, for a task read with CO-RE reads (any program type). Not for
 * kernel threads: the caller checks. */
static __always_inline __u64 rt_proc_cookie(struct task_struct *task, __u32 tgid)
{
	struct rt_proc_key k = {.tgid = tgid};

	k.start_time = BPF_CORE_READ(task, group_leader, start_time);
	k.exec_id = BPF_CORE_READ(task, self_exec_id);
	k.cset = (__u64)BPF_CORE_READ(task, cgroups);
	return rt_proc_cookie_of(&k);
}

#endif
