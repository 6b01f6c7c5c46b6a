// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A test-runnable wrapper around the shared rtnetlink parser, so that Go
 * tables can feed it crafted messages through BPF_PROG_TEST_RUN. A socket
 * filter, because every kernel routetrace supports can test-run one.
 */
#include "include/common.h"
#include "include/rtnl_parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The parsed event of the last run. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rt_event);
} parsed SEC(".maps");

/* Returns the parser's result + 100 (socket filters return unsigned). */
SEC("socket")
int parse_rtnl(struct __sk_buff *skb)
{
	struct rt_heap *h = rt_heap();
	__u32 zero = 0;
	int ret, len = skb->len;

	if (!h)
		return 0;
	__builtin_memset(&h->ev, 0, sizeof(h->ev));
	/* A signed test: 6.1's verifier learns nothing from "!= 0" (clang's
	 * form of an unsigned "< 1"), but raises the lower bound on "s< 1". */
	if (len <= 0)
		return 100 + RT_PARSE_SHORT;
	if (len > RT_SCRATCH)
		len = RT_SCRATCH;
	if (bpf_skb_load_bytes(skb, 0, h->buf, len))
		return 0;
	ret = rtnl_parse_heap(skb->len);
	bpf_map_update_elem(&parsed, &zero, &h->ev, BPF_ANY);
	return 100 + ret;
}
