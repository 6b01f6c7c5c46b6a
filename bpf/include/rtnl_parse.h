/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one rtnetlink request parser: used by the syscall capture (tier 3), by
 * the rule and nexthop hooks (which only get the request), and by the LSM
 * enforcer. rtnl_parse_heap reads the per-CPU heap's copy of one message,
 * h->buf, and fills the request fields of h->ev; the enforcer composes the
 * same head/attribute/finish pieces over its own scratch.
 *
 * rtnl_parse_heap is a global function so the verifier checks it once, not
 * once per call site or loop iteration; for the same reason it takes only a
 * scalar and finds its buffers itself.
 */
#ifndef ROUTETRACE_RTNL_PARSE_H
#define ROUTETRACE_RTNL_PARSE_H

#include "common.h"

#define NLMSG_HDRLEN 16
#define NLMSG_ERROR 2
#define NLM_F_REPLACE 0x100
#define NLA_TYPE_MASK 0x3fff
#define IFF_UP 0x1

#define RTM_NEWLINK 16
#define RTM_DELLINK 17
#define RTM_SETLINK 19
#define RTM_NEWADDR 20
#define RTM_DELADDR 21
#define RTM_NEWROUTE 24
#define RTM_DELROUTE 25
#define RTM_NEWRULE 32
#define RTM_DELRULE 33
#define RTM_NEWNEXTHOP 104
#define RTM_DELNEXTHOP 105

#define RT_MAX_ATTRS 32

/* rtnl_parse_heap results */
#define RT_PARSE_OK 0
#define RT_PARSE_IGNORED 1 /* a well-formed message routetrace does not report */
#define RT_PARSE_SHORT -1  /* shorter than its headers */
#define RT_PARSE_BADLEN -2 /* nlmsg_len smaller than a header */
#define RT_PARSE_BADATTR -3 /* an attribute runs past the message */
#define RT_PARSE_NOHEAP -4

/* Whether a message type is one routetrace reports or uses as a cause. */
static __always_inline int rtnl_type_wanted(__u16 type)
{
	switch (type) {
	case RTM_NEWROUTE:
	case RTM_DELROUTE:
	case RTM_NEWRULE:
	case RTM_DELRULE:
	case RTM_NEWNEXTHOP:
	case RTM_DELNEXTHOP:
	case RTM_DELADDR:
	case RTM_NEWLINK:
	case RTM_SETLINK:
	case RTM_DELLINK:
		return 1;
	}
	return 0;
}

static __always_inline __u16 rd16(const __u8 *b, __u32 off)
{
	return *(const __u16 *)&b[off & RT_SCRATCH_MASK];
}

static __always_inline __u32 rd32(const __u8 *b, __u32 off)
{
	return *(const __u32 *)&b[off & RT_SCRATCH_MASK];
}

static __always_inline __u8 rd8(const __u8 *b, __u32 off)
{
	return b[off & RT_SCRATCH_MASK];
}

/* Copies an address attribute; the heap's slack makes 16 bytes always safe,
 * bytes past plen are cleared so events compare equal. */
static __always_inline void rd_addr(__u8 *dst, const __u8 *b, __u32 off, __u32 plen)
{
	__builtin_memcpy(dst, &b[off & RT_SCRATCH_MASK], 16);
	if (plen < 16)
		__builtin_memset(dst + 4, 0, 12);
	if (plen < 4)
		__builtin_memset(dst, 0, 4);
}

/* Copies an interface name attribute. The kernel accepts names without a
 * NUL, so bytes past plen (the next attribute, or an earlier message in the
 * heap) are cleared rather than reported. */
static __always_inline void rd_name(char *dst, const __u8 *b, __u32 off, __u32 plen)
{
	__u32 n = plen < RT_IFNAME_LEN - 1 ? plen : RT_IFNAME_LEN - 1;

	__builtin_memset(dst, 0, RT_IFNAME_LEN);
	/* one helper call, not a byte loop: a loop here, inside the attribute
	 * loop, multiplies the verifier's states past its limit */
	bpf_probe_read_kernel(dst, n & (RT_IFNAME_LEN - 1), &b[off & RT_SCRATCH_MASK]);
}

static __always_inline void rtnl_route_attr(struct rt_event *e, const __u8 *b, __u16 type, __u32 p, __u32 plen)
{
	switch (type) {
	case 1: /* RTA_DST */
		rd_addr(e->dst, b, p, plen);
		break;
	case 2: /* RTA_SRC */
		rd_addr(e->src, b, p, plen);
		break;
	case 4: /* RTA_OIF */
		if (plen >= 4)
			e->oif = rd32(b, p);
		break;
	case 5: /* RTA_GATEWAY */
		rd_addr(e->gw, b, p, plen);
		e->gw_family = e->family;
		break;
	case 6: /* RTA_PRIORITY */
		if (plen >= 4)
			e->priority = rd32(b, p);
		break;
	case 9: /* RTA_MULTIPATH */
		e->flags |= RT_F_MULTIPATH;
		break;
	case 15: /* RTA_TABLE */
		if (plen >= 4)
			e->table = rd32(b, p);
		break;
	case 18: /* RTA_VIA: __kernel_sa_family_t, then the address */
		if (plen >= 2) {
			e->gw_family = rd8(b, p);
			rd_addr(e->gw, b, p + 2, plen - 2);
		}
		break;
	case 30: /* RTA_NH_ID */
		if (plen >= 4)
			e->nh_id = rd32(b, p);
		break;
	}
}

static __always_inline void rtnl_rule_attr(struct rt_event *e, const __u8 *b, __u16 type, __u32 p, __u32 plen)
{
	switch (type) {
	case 1: /* FRA_DST */
		rd_addr(e->dst, b, p, plen);
		break;
	case 2: /* FRA_SRC */
		rd_addr(e->src, b, p, plen);
		break;
	case 3: /* FRA_IIFNAME */
		rd_name(e->iifname, b, p, plen);
		break;
	case 4: /* FRA_GOTO */
		if (plen >= 4)
			e->goto_target = rd32(b, p);
		break;
	case 6: /* FRA_PRIORITY */
		if (plen >= 4)
			e->priority = rd32(b, p);
		break;
	case 10: /* FRA_FWMARK */
		if (plen >= 4)
			e->fwmark = rd32(b, p);
		break;
	case 15: /* FRA_TABLE */
		if (plen >= 4)
			e->table = rd32(b, p);
		break;
	case 16: /* FRA_FWMASK */
		if (plen >= 4)
			e->fwmask = rd32(b, p);
		break;
	case 17: /* FRA_OIFNAME */
		rd_name(e->oifname, b, p, plen);
		break;
	case 21: /* FRA_PROTOCOL */
		if (plen >= 1)
			e->protocol = rd8(b, p);
		break;
	}
}

static __always_inline void rtnl_nexthop_attr(struct rt_event *e, const __u8 *b, __u16 type, __u32 p, __u32 plen)
{
	switch (type) {
	case 1: /* NHA_ID */
		if (plen >= 4)
			e->nh_id = rd32(b, p);
		break;
	case 2: /* NHA_GROUP */
		e->flags |= RT_F_MULTIPATH;
		break;
	case 4: /* NHA_BLACKHOLE */
		e->type = 6; /* RTN_BLACKHOLE */
		break;
	case 5: /* NHA_OIF */
		if (plen >= 4)
			e->oif = rd32(b, p);
		break;
	case 6: /* NHA_GATEWAY */
		rd_addr(e->gw, b, p, plen);
		e->gw_family = e->family;
		break;
	}
}

/* IFA_LOCAL is the address; IFA_ADDRESS is the peer on point-to-point links
 * and the address otherwise. The peer waits in src until the end of the
 * message, where it becomes dst if no IFA_LOCAL came (the last of each wins,
 * as in the kernel). */
static __always_inline void rtnl_addr_attr(struct rt_event *e, const __u8 *b, __u16 type, __u32 p, __u32 plen)
{
	if (type == 2 /* IFA_LOCAL */) {
		rd_addr(e->dst, b, p, plen);
		e->gw_family = 1; /* marks "IFA_LOCAL seen"; cleared after the loop */
	} else if (type == 1 /* IFA_ADDRESS */) {
		rd_addr(e->src, b, p, plen);
		e->src_len = 1;
	}
}

static __always_inline void rtnl_link_attr(struct rt_event *e, const __u8 *b, __u16 type, __u32 p, __u32 plen)
{
	if (type == 3 /* IFLA_IFNAME */)
		rd_name(e->oifname, b, p, plen);
}

/* The pieces below are the parser: rtnl_parse_heap composes them over the
 * per-CPU heap's copy of one message; the enforcer (enforce.bpf.c) composes
 * the same pieces over attributes it streams from the skb, so that there is
 * one reading of each header and attribute. */

/* Parses the netlink and family headers at b[0:len] (len: the bytes of the
 * message there are, at least the 32 of the largest headers if the message
 * has them) into e, and sets *hdrlen to the family header's size. Returns
 * RT_PARSE_OK, RT_PARSE_IGNORED or RT_PARSE_SHORT. */
static __always_inline int rtnl_parse_head(struct rt_event *e, const __u8 *b, __u32 len, __u32 *hdrlen)
{
	__u16 type = rd16(b, 4), flags = rd16(b, 6);

	e->nlmsg_type = type;
	e->nlmsg_flags = flags;
	e->seq = rd32(b, 8);

	switch (type) {
	case RTM_NEWROUTE:
	case RTM_DELROUTE:
		*hdrlen = 12; /* struct rtmsg */
		if (len < NLMSG_HDRLEN + 12)
			return RT_PARSE_SHORT;
		e->object = RT_OBJ_ROUTE;
		e->family = rd8(b, 16);
		e->dst_len = rd8(b, 17);
		e->src_len = rd8(b, 18);
		e->tos = rd8(b, 19);
		e->table = rd8(b, 20);
		e->protocol = rd8(b, 21);
		e->scope = rd8(b, 22);
		e->type = rd8(b, 23);
		break;
	case RTM_NEWRULE:
	case RTM_DELRULE:
		*hdrlen = 12; /* struct fib_rule_hdr */
		if (len < NLMSG_HDRLEN + 12)
			return RT_PARSE_SHORT;
		e->object = RT_OBJ_RULE;
		e->family = rd8(b, 16);
		e->dst_len = rd8(b, 17);
		e->src_len = rd8(b, 18);
		e->tos = rd8(b, 19);
		e->table = rd8(b, 20);
		e->rule_action = rd8(b, 23);
		break;
	case RTM_NEWNEXTHOP:
	case RTM_DELNEXTHOP:
		*hdrlen = 8; /* struct nhmsg */
		if (len < NLMSG_HDRLEN + 8)
			return RT_PARSE_SHORT;
		e->object = RT_OBJ_NEXTHOP;
		e->family = rd8(b, 16);
		e->scope = rd8(b, 17);
		e->protocol = rd8(b, 18);
		break;
	case RTM_DELADDR:
		*hdrlen = 8; /* struct ifaddrmsg */
		if (len < NLMSG_HDRLEN + 8)
			return RT_PARSE_SHORT;
		e->object = RT_OBJ_ADDR;
		e->family = rd8(b, 16);
		e->dst_len = rd8(b, 17);
		e->scope = rd8(b, 19);
		e->oif = rd32(b, 20);
		break;
	case RTM_NEWLINK:
	case RTM_SETLINK:
	case RTM_DELLINK:
		*hdrlen = 16; /* struct ifinfomsg */
		if (len < NLMSG_HDRLEN + 16)
			return RT_PARSE_SHORT;
		e->object = RT_OBJ_LINK;
		e->family = rd8(b, 16);
		e->oif = rd32(b, 20);
		/* ifi_change says which ifi_flags bits the request sets */
		if (type != RTM_DELLINK && (rd32(b, 28) & IFF_UP) && !(rd32(b, 24) & IFF_UP))
			e->flags |= RT_F_LINK_DOWN;
		break;
	default:
		return RT_PARSE_IGNORED;
	}

	if (type == RTM_NEWROUTE || type == RTM_NEWRULE || type == RTM_NEWNEXTHOP || type == RTM_NEWLINK ||
	    type == RTM_SETLINK)
		e->op = (flags & NLM_F_REPLACE) ? RT_OP_REPLACE : RT_OP_ADD;
	else
		e->op = RT_OP_DELETE;
	return RT_PARSE_OK;
}

/* One attribute of e's object, its payload at b[p:p+plen]. */
static __always_inline void rtnl_parse_attr(struct rt_event *e, const __u8 *b, __u16 type, __u32 p, __u32 plen)
{
	switch (e->object) {
	case RT_OBJ_ROUTE:
		rtnl_route_attr(e, b, type, p, plen);
		break;
	case RT_OBJ_RULE:
		rtnl_rule_attr(e, b, type, p, plen);
		break;
	case RT_OBJ_NEXTHOP:
		rtnl_nexthop_attr(e, b, type, p, plen);
		break;
	case RT_OBJ_ADDR:
		rtnl_addr_attr(e, b, type, p, plen);
		break;
	case RT_OBJ_LINK:
		rtnl_link_attr(e, b, type, p, plen);
		break;
	}
}

/* After the last attribute: what only the whole message decides. */
static __always_inline void rtnl_parse_finish(struct rt_event *e)
{
	if (e->object == RT_OBJ_ADDR) {
		if (!e->gw_family && e->src_len)
			__builtin_memcpy(e->dst, e->src, sizeof(e->dst));
		__builtin_memset(e->src, 0, sizeof(e->src));
		e->src_len = 0;
		e->gw_family = 0;
	}
}

/* One attribute of the heap's message into the heap's event. A global
 * function, so the verifier checks the attribute switch once, on its own,
 * instead of once per iteration of rtnl_parse_heap's loop over every path
 * through the switch. Measured: a rule or nexthop hook verified 200,550
 * instructions, now 26,014; tier 3's sendmsg capture 245,029, now 70,493;
 * under arm64 TCG such a hook took 9.5 s to load, now 1.2 s. Scalar arguments
 * only (the heap is looked up again), as 5.10 allows no pointers here; every
 * read is masked, so any p and plen are safe. */
__noinline int rtnl_parse_heap_attr(__u32 type, __u32 p, __u32 plen)
{
	struct rt_heap *h = rt_heap();

	if (!h)
		return RT_PARSE_NOHEAP;
	rtnl_parse_attr(&h->ev, h->buf, type, p, plen);
	return RT_PARSE_OK;
}

/* Parses the message at h->buf[0:len] into h->ev. len is what was copied,
 * at most RT_SCRATCH; a longer message is parsed up to that and flagged. */
__noinline int rtnl_parse_heap(__u32 len)
{
	struct rt_heap *h = rt_heap();
	struct rt_event *e;
	__u32 nlmsg_len, off, hdrlen = 0, i;
	__u8 *b;
	int ret;

	if (!h)
		return RT_PARSE_NOHEAP;
	b = h->buf;
	e = &h->ev;
	if (len > RT_SCRATCH)
		len = RT_SCRATCH;
	if (len < NLMSG_HDRLEN)
		return RT_PARSE_SHORT;

	nlmsg_len = rd32(b, 0);
	if (nlmsg_len < NLMSG_HDRLEN)
		return RT_PARSE_BADLEN;
	if (nlmsg_len > len)
		e->flags |= RT_F_TRUNCATED;
	else
		len = nlmsg_len;

	ret = rtnl_parse_head(e, b, len, &hdrlen);
	if (ret != RT_PARSE_OK)
		return ret;

	off = NLMSG_HDRLEN + hdrlen;
	for (i = 0; i < RT_MAX_ATTRS; i++) {
		__u32 alen, plen, p;
		__u16 atype;

		if (off + 4 > len)
			break;
		alen = rd16(b, off);
		atype = rd16(b, off + 2) & NLA_TYPE_MASK;
		if (alen < 4)
			return RT_PARSE_BADATTR;
		if (off + alen > len) {
			if (!(e->flags & RT_F_TRUNCATED))
				return RT_PARSE_BADATTR;
			break; /* cut by our copy, not by the sender */
		}
		p = off + 4;
		plen = alen - 4;
		rtnl_parse_heap_attr(atype, p, plen);
		off += (alen + 3) & ~3U;
	}
	/* Attributes beyond what one pass reads: say the request was not read
	 * whole, so that no decision rests on it (the enforcer does not use
	 * this pass: it streams every attribute). */
	if (i == RT_MAX_ATTRS && off + 4 <= len)
		e->flags |= RT_F_TRUNCATED;
	rtnl_parse_finish(e);
	return RT_PARSE_OK;
}

/* --- the legacy route ioctls (net-tools `route`): SIOCADDRT, SIOCDELRT --- */

#define SIOCADDRT 0x890B
#define SIOCDELRT 0x890C

struct rtentry_user {
	unsigned long rt_pad1;
	struct sockaddr rt_dst;
	struct sockaddr rt_gateway;
	struct sockaddr rt_genmask;
	unsigned short rt_flags;
	short rt_pad2;
	__u32 pad_a; /* the ABI's own alignment, spelled out */
	unsigned long rt_pad3;
	void *rt_pad4;
	short rt_metric;
	__u16 pad_b[3];
	char *rt_dev;
	unsigned long rt_mtu;
	unsigned long rt_window;
	unsigned short rt_irtt;
	__u16 pad_c[3];
};

struct in6_rtmsg_user {
	struct in6_addr rtmsg_dst;
	struct in6_addr rtmsg_src;
	struct in6_addr rtmsg_gateway;
	__u32 rtmsg_type;
	__u16 rtmsg_dst_len;
	__u16 rtmsg_src_len;
	__u32 rtmsg_metric;
	__u32 pad1; /* the ABI's own alignment, spelled out */
	unsigned long rtmsg_info;
	__u32 rtmsg_flags;
	int rtmsg_ifindex;
};

/* Fills the route fields of e from the ioctl's argument, arg in user memory:
 * a struct in6_rtmsg on an AF_INET6 socket, a struct rtentry on any other
 * (inet, and packet sockets, which hand route ioctls to inet). Returns
 * nonzero when the argument cannot be read. */
static __always_inline int rtnl_parse_route_ioctl(struct rt_event *e, __u16 sock_family, const void *arg)
{
	e->object = RT_OBJ_ROUTE;
	e->table = 254; /* RT_TABLE_MAIN: the ioctl cannot name another */
	if (sock_family == AF_INET6) {
		struct in6_rtmsg_user r;

		if (bpf_probe_read_user(&r, sizeof(r), arg))
			return -1;
		e->family = AF_INET6;
		__builtin_memcpy(e->dst, &r.rtmsg_dst, 16);
		__builtin_memcpy(e->gw, &r.rtmsg_gateway, 16);
		e->dst_len = r.rtmsg_dst_len;
		e->priority = r.rtmsg_metric;
		e->oif = r.rtmsg_ifindex;
		if (r.rtmsg_flags & 0x2 /* RTF_GATEWAY */)
			e->gw_family = AF_INET6;
	} else {
		struct rtentry_user r;
		struct sockaddr_in *dst, *gw, *mask;
		__u32 m;
		int i;

		if (bpf_probe_read_user(&r, sizeof(r), arg))
			return -1;
		e->family = AF_INET;
		dst = (struct sockaddr_in *)&r.rt_dst;
		gw = (struct sockaddr_in *)&r.rt_gateway;
		mask = (struct sockaddr_in *)&r.rt_genmask;
		__builtin_memcpy(e->dst, &dst->sin_addr, 4);
		if (r.rt_flags & 0x2 /* RTF_GATEWAY */) {
			__builtin_memcpy(e->gw, &gw->sin_addr, 4);
			e->gw_family = AF_INET;
		}
		m = bpf_ntohl(mask->sin_addr.s_addr);
		if (r.rt_flags & 0x4 /* RTF_HOST */)
			m = 0xffffffff;
		for (i = 0; i < 32; i++) {
			if (!(m & (0x80000000U >> i)))
				break;
			e->dst_len++;
		}
		/* route(8) passes metric+1, the kernel stores metric-1 */
		e->priority = r.rt_metric > 0 ? r.rt_metric - 1 : 0;
		if (r.rt_dev)
			bpf_probe_read_user_str(e->oifname, sizeof(e->oifname), r.rt_dev);
	}
	return 0;
}

#endif
