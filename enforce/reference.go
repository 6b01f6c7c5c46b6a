package enforce

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The reference matcher: the BPF walk and matcher (enforce.bpf.c,
// policy.h, the parts of rtnl_parse.h they use) written again in Go, over
// the same Facts. The tests run both on the same requests and require the
// same decision; nothing else uses it.

// Decision is what the enforcer decided about one request (one skb).
type Decision struct {
	Refused  bool
	Rule     uint32 // rule id; NoRule for a fail-closed refusal without one
	Reason   uint32 // Reason*
	MsgIndex uint32 // the refused message's index, or where the walk stopped
	Msgs     uint32 // messages walked
}

// request is the part of an rt_event the matcher reads.
type request struct {
	typ, flags    uint16
	object, op    uint8
	family        uint8
	dstLen        uint8
	protocol      uint8
	linkDown      bool
	group         bool // NHA_GROUP present
	table         uint32
	oif           uint32
	priority      uint32
	nhID          uint32
	dst           [16]byte
	hasPrio       bool
	hasName       bool
	mpRule        uint32 // rule id + 1
	bad           uint32 // a fail-closed reason, 0: none
	attrsFinished bool
}

const (
	objRoute = 1 + iota
	objRule
	objNexthop
	objAddr
	objLink

	opAdd     = 1
	opReplace = 2
	opDelete  = 3
)

var ne = binary.NativeEndian

const nlaTypeMask = 0x3fff // NLA_TYPE_MASK: the nested and byte-order flags off

func wanted(typ uint16) bool {
	switch typ {
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE, unix.RTM_NEWRULE, unix.RTM_DELRULE, unix.RTM_NEWNEXTHOP,
		unix.RTM_DELNEXTHOP, unix.RTM_DELADDR, unix.RTM_NEWLINK, unix.RTM_SETLINK, unix.RTM_DELLINK:
		return true
	}
	return false
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// Judge decides about the messages of one request sent on a socket of
// namespace netns by an actor that allowed says is allowed or not.
func Judge(f *Facts, netns uint32, allowed bool, msgs []byte) Decision {
	if !f.Namespaces[netns] {
		return Decision{}
	}
	var d Decision
	length := uint64(len(msgs))
	off := uint64(0)
	decided := false // refused, or allowed on the first refusal
	refuse := func(rule, reason uint32) {
		decided = true
		if allowed {
			return
		}
		d.Refused, d.Rule, d.Reason = true, rule, reason
	}
	for !decided {
		if off+16 > length {
			break
		}
		n := uint64(ne.Uint32(msgs[off:]))
		typ := ne.Uint16(msgs[off+4:])
		if n < 16 || n > length-off {
			if wanted(typ) {
				refuse(NoRule, ReasonBadLen)
			}
			break
		}
		if wanted(typ) {
			if rule, reason, bad := judgeMsg(f, netns, msgs[off:off+n]); bad {
				refuse(rule, reason)
			}
		}
		if decided {
			break
		}
		d.MsgIndex++
		off += align4(n)
		if off >= length {
			break
		}
	}
	d.Msgs = d.MsgIndex
	if decided {
		d.Msgs++
	}
	return d
}

// judgeMsg judges one message (msg is nlmsg_len bytes).
func judgeMsg(f *Facts, netns uint32, msg []byte) (rule, reason uint32, refuse bool) {
	var r request
	head := make([]byte, 32)
	copy(head, msg)
	hdrlen, ok := parseHead(&r, head, min(len(msg), 32))
	if !ok {
		return NoRule, ReasonShort, true
	}
	if !mayCount(&r, f.Policy) {
		return 0, 0, false
	}
	if 16+hdrlen < len(msg) {
		walkAttrs(f, netns, &r, msg[16+hdrlen:])
		if r.bad != 0 {
			return NoRule, r.bad, true
		}
	}
	return match(f, netns, &r)
}

func parseHead(r *request, b []byte, n int) (hdrlen int, ok bool) {
	r.typ = ne.Uint16(b[4:])
	r.flags = ne.Uint16(b[6:])
	switch r.typ {
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		hdrlen, r.object = 12, objRoute
		r.dstLen, r.table, r.protocol = b[17], uint32(b[20]), b[21]
	case unix.RTM_NEWRULE, unix.RTM_DELRULE:
		hdrlen, r.object = 12, objRule
		r.dstLen, r.table = b[17], uint32(b[20])
	case unix.RTM_NEWNEXTHOP, unix.RTM_DELNEXTHOP:
		hdrlen, r.object = 8, objNexthop
		r.protocol = b[18]
	case unix.RTM_DELADDR:
		hdrlen, r.object = 8, objAddr
		r.dstLen, r.oif = b[17], ne.Uint32(b[20:])
	case unix.RTM_NEWLINK, unix.RTM_SETLINK, unix.RTM_DELLINK:
		hdrlen, r.object = 16, objLink
		r.oif = ne.Uint32(b[20:])
		r.linkDown = r.typ != unix.RTM_DELLINK && ne.Uint32(b[28:])&unix.IFF_UP != 0 && ne.Uint32(b[24:])&unix.IFF_UP == 0
	default:
		return 0, false
	}
	if n < 16+hdrlen {
		return hdrlen, false
	}
	r.family = b[16]
	switch r.typ {
	case unix.RTM_NEWROUTE, unix.RTM_NEWRULE, unix.RTM_NEWNEXTHOP, unix.RTM_NEWLINK, unix.RTM_SETLINK:
		r.op = opAdd
		if r.flags&unix.NLM_F_REPLACE != 0 {
			r.op = opReplace
		}
	default:
		r.op = opDelete
	}
	return hdrlen, true
}

func mayCount(r *request, c *Compiled) bool {
	if r.op == opReplace && !c.Replace && r.object != objLink {
		return false
	}
	switch r.object {
	case objRoute:
		return r.op != opAdd || c.MoreSpecific
	case objRule, objNexthop:
		return r.op != opAdd
	case objLink:
		return r.typ == unix.RTM_DELLINK || r.linkDown
	}
	return true
}

// walkAttrs reads the attributes as enf_attr does: each header, and the
// first 20 bytes of each payload.
func walkAttrs(f *Facts, netns uint32, r *request, b []byte) {
	off, end := uint64(0), uint64(len(b))
	for {
		if off+4 > end {
			return
		}
		alen := uint64(ne.Uint16(b[off:]))
		typ := ne.Uint16(b[off+2:]) & nlaTypeMask
		if alen < 4 || off+alen > end {
			r.bad = ReasonBadAttr
			return
		}
		payload := b[off+4 : off+alen]
		attr(f, netns, r, typ, payload)
		if r.bad != 0 {
			return
		}
		off += align4(alen)
		if off >= end {
			return
		}
	}
}

// rdAddr is rtnl_parse.h's rd_addr: 16 bytes, 4 of them below 16, none
// below 4.
func rdAddr(p []byte) (a [16]byte) {
	copy(a[:], p[:min(len(p), 16)])
	if len(p) < 16 {
		clear(a[4:])
	}
	if len(p) < 4 {
		clear(a[:])
	}
	return a
}

func attr(f *Facts, netns uint32, r *request, typ uint16, p []byte) {
	u32 := func(v *uint32) {
		if len(p) >= 4 {
			*v = ne.Uint32(p)
		}
	}
	switch r.object {
	case objRoute:
		switch typ {
		case unix.RTA_DST:
			r.dst = rdAddr(p)
		case unix.RTA_OIF:
			u32(&r.oif)
		case unix.RTA_TABLE:
			u32(&r.table)
		case unix.RTA_MULTIPATH:
			multipath(f, netns, r, p)
		}
	case objRule:
		switch typ {
		case unix.FRA_PRIORITY:
			u32(&r.priority)
			r.hasPrio = r.hasPrio || len(p) >= 4
		case unix.FRA_TABLE:
			u32(&r.table)
		}
	case objNexthop:
		switch typ {
		case unix.NHA_ID:
			u32(&r.nhID)
		case unix.NHA_GROUP:
			r.group = true
		}
	case objLink:
		if typ == unix.IFLA_IFNAME || typ == unix.IFLA_ALT_IFNAME {
			r.hasName = true
		}
	}
}

func multipath(f *Facts, netns uint32, r *request, p []byte) {
	off, end := uint64(0), uint64(len(p))
	rule := uint32(0)
	for end > 0 {
		if off+8 > end {
			if off != end {
				r.bad = ReasonBadNexthop
				return
			}
			break
		}
		n := uint64(ne.Uint16(p[off:]))
		if n < 8 || off+n > end {
			r.bad = ReasonBadNexthop
			return
		}
		if id, ok := f.Ifaces[[2]uint32{netns, ne.Uint32(p[off+4:])}]; ok && rule == 0 {
			rule = id + 1
		}
		off += align4(n)
		if off >= end {
			break
		}
	}
	if rule != 0 && r.mpRule == 0 {
		r.mpRule = rule
	}
}

func match(f *Facts, netns uint32, r *request) (rule, reason uint32, hit bool) {
	c := f.Policy
	switch r.object {
	case objRoute:
		return matchRoute(f, netns, r)
	case objRule:
		if r.op == opAdd || (r.op == opReplace && !c.Replace) {
			return 0, 0, false
		}
		for _, s := range c.Rules {
			if s.Family != 0 && s.Family != r.family {
				continue
			}
			if s.Table != 0 && r.table != 0 && s.Table != r.table {
				continue
			}
			if !s.HasPriority || (r.hasPrio && r.priority >= s.PriorityMin && r.priority <= s.PriorityMax) {
				return s.Rule, ReasonProtected, true
			}
			if !r.hasPrio {
				return s.Rule, ReasonNoPriority, true
			}
		}
	case objNexthop:
		if r.op == opAdd || (r.op == opReplace && !c.Replace) {
			return 0, 0, false
		}
		for _, s := range c.Nexthops {
			if (s.IDMin != 0 || s.IDMax != 0) && (r.nhID < s.IDMin || r.nhID > s.IDMax) {
				continue
			}
			if r.op == opReplace && s.Groups && !r.group {
				continue
			}
			return s.Rule, ReasonProtected, true
		}
	case objAddr, objLink:
		if r.object == objLink && r.typ != unix.RTM_DELLINK && !r.linkDown {
			return 0, 0, false
		}
		if r.oif != 0 {
			id, ok := f.Ifaces[[2]uint32{netns, r.oif}]
			return id, ReasonProtected, ok
		}
		if id, ok := f.Ifaces[[2]uint32{netns, 0}]; ok && r.object == objLink && r.hasName {
			return id, ReasonLinkByName, true
		}
	}
	return 0, 0, false
}

func matchRoute(f *Facts, netns uint32, r *request) (rule, reason uint32, hit bool) {
	c := f.Policy
	if (r.op == opReplace && !c.Replace) || (r.op == opAdd && !c.MoreSpecific) {
		return 0, 0, false
	}
	if p, ok := longestPrefix(c, r); ok && (r.op != opAdd || uint32(r.dstLen) > uint32(p.Prefix.Bits())) {
		return p.Rule, ReasonProtected, true
	}
	if r.op == opAdd {
		return 0, 0, false
	}
	table := normTable(r.table)
	if dst, ok := reqPrefix(r); ok {
		if id, ok := f.Routes[routeID{netns: netns, table: table, dst: dst}]; ok {
			return id, ReasonProtected, true
		}
	}
	for t, id := range c.Tables {
		if normTable(t) == table {
			return id, ReasonProtected, true
		}
	}
	if r.oif != 0 {
		if id, ok := f.Ifaces[[2]uint32{netns, r.oif}]; ok {
			return id, ReasonProtected, true
		}
	}
	if r.mpRule != 0 {
		return r.mpRule - 1, ReasonProtected, true
	}
	if r.op == opReplace {
		if id, ok := c.Protocols[r.protocol]; ok {
			return id, ReasonProtected, true
		}
	}
	return 0, 0, false
}

// reqPrefix is the request's dst/len as the exact route map keys it, when
// user space could have stored such a key.
func reqPrefix(r *request) (netip.Prefix, bool) {
	switch {
	case r.family == unix.AF_INET && r.dstLen <= 32:
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(r.dst[:4])), int(r.dstLen)).Masked(), true
	case r.family == unix.AF_INET6 && r.dstLen <= 128:
		return netip.PrefixFrom(netip.AddrFrom16(r.dst), int(r.dstLen)).Masked(), true
	}
	return netip.Prefix{}, false
}

// longestPrefix is the LPM trie's answer: the longest protected prefix of
// the request's family no longer than its (clamped) length and containing
// its dst.
func longestPrefix(c *Compiled, r *request) (Prefix, bool) {
	var addr netip.Addr
	bits := int(r.dstLen)
	switch r.family {
	case unix.AF_INET:
		addr, bits = netip.AddrFrom4([4]byte(r.dst[:4])), min(bits, 32)
	case unix.AF_INET6:
		addr, bits = netip.AddrFrom16(r.dst), min(bits, 128)
	default:
		return Prefix{}, false
	}
	best, found := Prefix{}, false
	for _, p := range c.Prefixes {
		if p.Prefix.Addr().Is4() != addr.Is4() || p.Prefix.Bits() > bits || !p.Prefix.Contains(addr) {
			continue
		}
		if !found || p.Prefix.Bits() > best.Prefix.Bits() {
			best, found = p, true
		}
	}
	return best, found
}
